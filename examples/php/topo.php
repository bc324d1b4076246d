<?php
// What a PHP program run by topo needs, in one place (docs/reference.md#the-node-contract): its endpoints from
// TOPO_SOCKET_<NAME>, its own name, a socket connected to them, and a stop flag.
// Include it with: require __DIR__ . '/topo.php';

// The replica's name, e.g. "worker.1".
function topo_node(): string
{
    return getenv('TOPO_NODE') . '.' . getenv('TOPO_REPLICA');
}

// A socket of $type connected to every endpoint topo resolved for the declared
// socket $name; a receive waits at most $timeout_ms. Exits 2 outside `topo up`.
function topo_connect(ZMQContext $context, int $type, string $name, int $timeout_ms): ZMQSocket
{
    $var = 'TOPO_SOCKET_' . strtoupper($name);
    $endpoints = getenv($var);
    if ($endpoints === false || $endpoints === '') {
        fwrite(STDERR, basename($_SERVER['SCRIPT_NAME']) . ": $var is not set; run me with `topo up`\n");
        exit(2);
    }
    $socket = $context->getSocket($type);
    $socket->setSockOpt(ZMQ::SOCKOPT_LINGER, 0);
    $socket->setSockOpt(ZMQ::SOCKOPT_RCVTIMEO, $timeout_ms);
    foreach (explode(',', $endpoints) as $endpoint) {
        $socket->connect($endpoint);
    }
    return $socket;
}

// Sets $stopping once topo sends its stop signal (SIGTERM).
function topo_on_stop(bool &$stopping): void
{
    if (function_exists('pcntl_async_signals')) {
        pcntl_async_signals(true);
        pcntl_signal(SIGTERM, function () use (&$stopping) { $stopping = true; });
    }
}

// A receive that ends the loop on the stop signal: false on a timeout (look at
// $stopping again), null once the node should stop, else what $receive got.
function topo_receive(callable $receive, bool &$stopping)
{
    try {
        return $receive();
    } catch (ZMQSocketException $e) {
        // EINTR (4): a signal cut the wait short, and the only signal topo sends is the
        // stop signal. (php-zmq's wait swallows it: the handler may never run.)
        if ($stopping || $e->getCode() === 4) {
            return null;
        }
        throw $e;
    }
}
