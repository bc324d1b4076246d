<?php
// A REQ client for topo: sends requests through the broker and prints each reply.
// topo hands it its endpoints in the environment (docs/reference.md#the-node-contract):
//   TOPO_SOCKET_SERVER       comma-separated endpoints to connect to
//   TOPO_SOCKET_SERVER_TYPE  REQ
require __DIR__ . '/topo.php';

$count = (int) (getenv('REQUESTS') ?: 5);
$greeting = getenv('GREETING') ?: 'hello';
$node = topo_node();

$context = new ZMQContext();
// A reply that never comes must not hang the run: give up after 5 s.
$socket = topo_connect($context, ZMQ::SOCKET_REQ, 'server', 5000);

for ($i = 1; $i <= $count; $i++) {
    $socket->send("$greeting $i from $node");
    $reply = $socket->recv();
    if ($reply === false) {
        fwrite(STDERR, "client.php: no reply to request $i within 5 s\n");
        exit(1);
    }
    echo "reply $i: $reply\n";
}
echo "client done: $count replies\n";
exit(0);
