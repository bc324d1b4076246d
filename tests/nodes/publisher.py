"""A Python ``command`` node: publishes ``news N`` on its PUB socket every 20 ms until stopped."""

from __future__ import annotations

from orchestrator.node import from_env


def main() -> None:
    with from_env() as node:
        pub = node.sockets["pub"]
        n = 0
        while not node.stopping.wait(0.02):
            n += 1
            pub.send_string(f"news {n}")


if __name__ == "__main__":
    main()
