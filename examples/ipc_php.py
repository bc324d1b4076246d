"""The Python side of topologies/ipc_php.yaml: one message queue and one segment shared with PHP.

The two programs share nothing but the SysV keys topo gives them. Python
writes a greeting into the segment at offset 0 and sends its length as a
message of type 1; PHP reads the greeting, writes its answer at offset 256 and
sends the answer's length as type 2; Python reads the answer. Message bodies
are plain bytes: PHP sends and receives them with serialisation off.
"""

from __future__ import annotations

from typing import Any

FROM_PYTHON, FROM_PHP = 1, 2
REPLY_AT = 256


def python_side(node: Any) -> int:
    inbox, board = node.ipc["inbox"], node.ipc["board"]
    greeting = b"hello from python"
    board.write(greeting, 0)
    inbox.send(str(len(greeting)).encode(), type=FROM_PYTHON)
    print(f"python: wrote {greeting.decode()!r} to shared memory", flush=True)
    body, _ = inbox.receive(type=FROM_PHP)  # blocks until PHP answers; topo's stop ends the wait
    answer = board.read(int(body), REPLY_AT).decode()
    print(f"python: php answered {answer!r}", flush=True)
    return 0
