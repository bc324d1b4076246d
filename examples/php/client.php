<?php
// A REQ client for topo: sends requests through the broker and prints each reply.
// topo hands it its endpoints in the environment (SPEC §4):
//   TOPO_SOCKET_SERVER       comma-separated endpoints to connect to
//   TOPO_SOCKET_SERVER_TYPE  REQ
$endpoints = getenv('TOPO_SOCKET_SERVER');
if ($endpoints === false || $endpoints === '') {
    fwrite(STDERR, "client.php: TOPO_SOCKET_SERVER is not set; run me with `topo up`\n");
    exit(2);
}
$count = (int) (getenv('REQUESTS') ?: 5);
$greeting = getenv('GREETING') ?: 'hello';
$node = getenv('TOPO_NODE') . '.' . getenv('TOPO_REPLICA');

$context = new ZMQContext();
$socket = $context->getSocket(ZMQ::SOCKET_REQ);
$socket->setSockOpt(ZMQ::SOCKOPT_LINGER, 0);
// A reply that never comes must not hang the run: give up after 5 s.
$socket->setSockOpt(ZMQ::SOCKOPT_RCVTIMEO, 5000);
foreach (explode(',', $endpoints) as $endpoint) {
    $socket->connect($endpoint);
}

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
