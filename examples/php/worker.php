<?php
// A REP worker for topo: answers every request with the request in upper case
// and the name of the worker that did it. Runs until topo stops it (SIGTERM).
$endpoints = getenv('TOPO_SOCKET_JOBS');
if ($endpoints === false || $endpoints === '') {
    fwrite(STDERR, "worker.php: TOPO_SOCKET_JOBS is not set; run me with `topo up`\n");
    exit(2);
}
$node = getenv('TOPO_NODE') . '.' . getenv('TOPO_REPLICA');

$stopping = false;
if (function_exists('pcntl_async_signals')) {
    pcntl_async_signals(true);
    pcntl_signal(SIGTERM, function () use (&$stopping) { $stopping = true; });
}

$context = new ZMQContext();
$socket = $context->getSocket(ZMQ::SOCKET_REP);
$socket->setSockOpt(ZMQ::SOCKOPT_LINGER, 0);
// Wake up now and then so a stop request is seen even when no work arrives.
$socket->setSockOpt(ZMQ::SOCKOPT_RCVTIMEO, 200);
foreach (explode(',', $endpoints) as $endpoint) {
    $socket->connect($endpoint);
}
echo "worker $node ready\n";

while (!$stopping) {
    try {
        $request = $socket->recv();
    } catch (ZMQSocketException $e) {
        // EINTR (4): a signal cut the wait short, and the only signal topo sends is the
        // stop signal. (php-zmq's wait swallows it: the handler above may never run.)
        if ($stopping || $e->getCode() === 4) {
            break;
        }
        throw $e;
    }
    if ($request === false) {
        continue;  // receive timeout: look at $stopping again
    }
    $socket->send(strtoupper($request) . " (by $node)");
}
exit(0);
