<?php
// A REQ client for topo (topologies/php_lbbroker.yaml): sends REQUESTS requests
// through the broker, one at a time, and prints each reply. Its endpoints come
// from TOPO_SOCKET_BROKER (SPEC §4).
$endpoints = getenv('TOPO_SOCKET_BROKER');
if ($endpoints === false || $endpoints === '') {
    fwrite(STDERR, "lb_client.php: TOPO_SOCKET_BROKER is not set; run me with `topo up`\n");
    exit(2);
}
$count = (int) (getenv('REQUESTS') ?: 4);
$node = getenv('TOPO_NODE') . '.' . getenv('TOPO_REPLICA');

$context = new ZMQContext();
$socket = $context->getSocket(ZMQ::SOCKET_REQ);
$socket->setSockOpt(ZMQ::SOCKOPT_LINGER, 0);
// A reply that never comes must not hang the run: give up after 10 s.
$socket->setSockOpt(ZMQ::SOCKOPT_RCVTIMEO, 10000);
foreach (explode(',', $endpoints) as $endpoint) {
    $socket->connect($endpoint);
}

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
