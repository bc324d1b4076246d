<?php
// A load-balanced worker for topo (topologies/php_lbbroker.yaml). It uses a REQ
// socket the other way round: it *asks* for work by sending READY, and each
// reply it sends is also the next "ready". The broker's ROUTER sees
// [worker id, "", ...]; the REQ socket hides its own part of the envelope, so
// this code gets [client id, "", request] and must send the client id back.
require __DIR__ . '/topo.php';

$node = topo_node();
$stopping = false;
topo_on_stop($stopping);
$context = new ZMQContext();
// Wake up now and then so a stop request is seen even when no work arrives.
$socket = topo_connect($context, ZMQ::SOCKET_REQ, 'broker', 200);
$socket->send("READY $node");
echo "$node ready for work\n";

$served = 0;
while (!$stopping) {
    $frames = topo_receive(fn () => $socket->recvMulti(), $stopping);
    if ($frames === null) {
        break;
    }
    if ($frames === false) {
        continue;  // receive timeout: look at $stopping again
    }
    [$client, $empty, $request] = $frames;
    $served++;
    $socket->sendMulti([$client, '', strtoupper($request) . " (by $node)"]);
}
echo "$node served $served requests\n";
exit(0);
