<?php
// A REQ client that speaks CURVE (topologies/ironhouse.yaml): sends REQUESTS requests
// through the broker, one at a time, and prints each reply. It is client.php with one
// change: topo_curve_connect (topo.php) gives the socket this node's key pair from
// TOPO_CURVE_SECRET_FILE and TOPO_CURVE_PUBLIC_KEY, and the broker's public key from
// TOPO_SOCKET_SERVER_SERVERKEY, before it connects to TOPO_SOCKET_SERVER
// (docs/reference.md#the-node-contract).
require __DIR__ . '/topo.php';

$count = (int) (getenv('REQUESTS') ?: 4);
$node = topo_node();

$context = new ZMQContext();
// A reply that never comes must not hang the run: give up after 5 s. A CURVE
// handshake that fails (a wrong server key, a server that does not allow us)
// looks just like that here: libzmq retries it quietly.
$socket = topo_curve_connect($context, ZMQ::SOCKET_REQ, 'server', 5000);

for ($i = 1; $i <= $count; $i++) {
    $socket->send("request $i");
    $reply = $socket->recv();
    if ($reply === false) {
        fwrite(STDERR, "$node: no reply to request $i within 5 s (did the CURVE handshake fail?)\n");
        exit(1);
    }
    echo "client: $reply\n";
}
echo "client: done, $count replies, every one encrypted\n";
exit(0);
