<?php
// A REQ client for topo (topologies/php_lbbroker.yaml): sends REQUESTS requests
// through the broker, one at a time, and prints each reply. Its endpoints come
// from TOPO_SOCKET_BROKER (docs/reference.md#the-node-contract).
require __DIR__ . '/topo.php';

$count = (int) (getenv('REQUESTS') ?: 4);
$node = topo_node();

$context = new ZMQContext();
// A reply that never comes must not hang the run: give up after 10 s.
$socket = topo_connect($context, ZMQ::SOCKET_REQ, 'broker', 10000);

for ($i = 1; $i <= $count; $i++) {
    $socket->send("hello $i from $node");
    $reply = $socket->recv();
    if ($reply === false) {
        fwrite(STDERR, "$node: no reply to request $i within 10 s\n");
        exit(1);
    }
    echo "$node: reply $i: $reply\n";
}
echo "$node: done, $count replies\n";
exit(0);
