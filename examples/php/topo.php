<?php
// What a PHP program run by topo needs, in one place (docs/reference.md#the-node-contract): its endpoints from
// TOPO_SOCKET_<NAME>, its own name, a socket connected to them (with CURVE: a socket
// that has its keys), and a stop flag.
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

// With `security: {curve: true}`: a socket of $type that is a CURVE client of every
// endpoint of the declared socket $name, as topo_connect otherwise. A Python node
// gets this done by topo; a command node sets the options itself, before it connects:
//   TOPO_CURVE_SECRET_FILE          its certificate (0600), see topo_curve_secret_key
//   TOPO_CURVE_PUBLIC_KEY           its public key (Z85, 40 characters)
//   TOPO_SOCKET_<NAME>_SERVERKEY    the server's public key for each endpoint of
//                                   TOPO_SOCKET_<NAME>, comma-separated, same order
// libzmq takes Z85 text (40 characters) or the 32 raw bytes (ZMQ::z85Decode) alike.
function topo_curve_connect(ZMQContext $context, int $type, string $name, int $timeout_ms): ZMQSocket
{
    $var = 'TOPO_SOCKET_' . strtoupper($name);
    $endpoints = explode(',', topo_env($var));
    $serverkeys = explode(',', topo_env("{$var}_SERVERKEY"));
    if (count($serverkeys) !== count($endpoints) || in_array('', $serverkeys, true)) {
        topo_fail("{$var}_SERVERKEY has no server key for every endpoint of $var: "
                  . "is the other side a node of this topology, over tcp or ipc?");
    }
    $socket = $context->getSocket($type);
    $socket->setSockOpt(ZMQ::SOCKOPT_LINGER, 0);
    $socket->setSockOpt(ZMQ::SOCKOPT_RCVTIMEO, $timeout_ms);
    // This node's key pair, once for the socket: it says who we are.
    $socket->setSockOpt(ZMQ::SOCKOPT_CURVE_PUBLICKEY, topo_env('TOPO_CURVE_PUBLIC_KEY'));
    $socket->setSockOpt(ZMQ::SOCKOPT_CURVE_SECRETKEY,
                        topo_curve_secret_key(topo_env('TOPO_CURVE_SECRET_FILE')));
    foreach ($endpoints as $i => $endpoint) {
        // The server key says whom we talk to; libzmq reads it at connect(), so set it
        // before each one.
        $socket->setSockOpt(ZMQ::SOCKOPT_CURVE_SERVERKEY, $serverkeys[$i]);
        $socket->connect($endpoint);
    }
    return $socket;
}

// The secret key (Z85) in a ZeroMQ certificate file, the format topo (and czmq,
// pyzmq's zmq.auth) write: a `secret-key = "..."` line, indented, under `curve`.
function topo_curve_secret_key(string $file): string
{
    $text = @file_get_contents($file);
    if ($text === false) {
        topo_fail("cannot read the CURVE certificate $file");
    }
    $section = '';
    foreach (preg_split('/\R/', $text) as $line) {
        if (trim($line) === '' || ltrim($line)[0] === '#') {
            continue;
        }
        if (!ctype_space($line[0])) {
            $section = trim($line);  // a section name starts at the left margin
            continue;
        }
        if ($section === 'curve' && preg_match('/^\s+secret-key\s*=\s*"(.{40})"\s*$/', $line, $m)) {
            return $m[1];
        }
    }
    topo_fail("$file is not a secret ZeroMQ certificate: no secret-key under `curve`");
}

// The value of environment variable $var; exits 2 when it is unset or empty.
function topo_env(string $var): string
{
    $value = getenv($var);
    if ($value === false || $value === '') {
        $curve = str_starts_with($var, 'TOPO_CURVE_') || str_ends_with($var, '_SERVERKEY');
        topo_fail("$var is not set; run me with `topo up`"
                  . ($curve ? ' of a topology with `security: {curve: true}`' : ''));
    }
    return $value;
}

// Says $why on stderr, with the program's name, and exits 2 (a setup error).
function topo_fail(string $why): never
{
    fwrite(STDERR, basename($_SERVER['SCRIPT_NAME']) . ": $why\n");
    exit(2);
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
