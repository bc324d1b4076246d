<?php
// A REP worker for topo: answers every request with the request in upper case
// and the name of the worker that did it. Runs until topo stops it (SIGTERM).
// Its endpoints come from TOPO_SOCKET_JOBS (see topo.php).
require __DIR__ . '/topo.php';

$node = topo_node();
$stopping = false;
topo_on_stop($stopping);
$context = new ZMQContext();
// Wake up now and then so a stop request is seen even when no work arrives.
$socket = topo_connect($context, ZMQ::SOCKET_REP, 'jobs', 200);
echo "worker $node ready\n";

while (!$stopping) {
    $request = topo_receive(fn () => $socket->recv(), $stopping);
    if ($request === null) {
        break;
    }
    if ($request === false) {
        continue;  // receive timeout: look at $stopping again
    }
    $socket->send(strtoupper($request) . " (by $node)");
}
exit(0);
