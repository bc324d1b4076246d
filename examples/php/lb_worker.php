<?php
// A load-balanced worker for topo (topologies/php_lbbroker.yaml). It uses a REQ
// socket the other way round: it *asks* for work by sending READY, and each
// reply it sends is also the next "ready". The broker's ROUTER sees
// [worker id, "", ...]; the REQ socket hides its own part of the envelope, so
// this code gets [client id, "", request] and must send the client id back.
$endpoints = getenv('TOPO_SOCKET_BROKER');
if ($endpoints === false || $endpoints === '') {
    fwrite(STDERR, "lb_worker.php: TOPO_SOCKET_BROKER is not set; run me with `topo up`\n");
    exit(2);
}
$node = getenv('TOPO_NODE') . '.' . getenv('TOPO_REPLICA');

$stopping = false;
if (function_exists('pcntl_async_signals')) {
    pcntl_async_signals(true);
    pcntl_signal(SIGTERM, function () use (&$stopping) { $stopping = true; });
}

$context = new ZMQContext();
$socket = $context->getSocket(ZMQ::SOCKET_REQ);
$socket->setSockOpt(ZMQ::SOCKOPT_LINGER, 0);
// Wake up now and then so a stop request is seen even when no work arrives.
$socket->setSockOpt(ZMQ::SOCKOPT_RCVTIMEO, 200);
foreach (explode(',', $endpoints) as $endpoint) {
    $socket->connect($endpoint);
}
$socket->send("READY $node");
echo "$node ready for work\n";

$served = 0;
while (!$stopping) {
    try {
        $frames = $socket->recvMulti();
    } catch (ZMQSocketException $e) {
        // EINTR (4): a signal cut the wait short, and the only signal topo sends is the
        // stop signal. (php-zmq's wait swallows it: the handler above may never run.)
        if ($stopping || $e->getCode() === 4) {
            break;
        }
        throw $e;
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
