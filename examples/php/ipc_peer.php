<?php
// The PHP side of topologies/ipc_php.yaml: a System V message queue and a
// shared-memory segment shared with a Python node, through their keys.
// topo hands the keys over in the environment (docs/reference.md#the-node-contract):
//   TOPO_IPC_INBOX_KEY   the message queue's key (msg_get_queue)
//   TOPO_IPC_BOARD_KEY   the segment's key (shmop_open)
// Messages are raw bytes both ways: PHP's serialisation is off, so Python
// sends and reads plain strings.
// PHP's own semaphores (sem_get) come in sets of three and cannot share a
// plain SysV semaphore; the turns here are taken with message types instead.
$inbox_key = getenv('TOPO_IPC_INBOX_KEY');
$board_key = getenv('TOPO_IPC_BOARD_KEY');
if ($inbox_key === false || $board_key === false) {
    fwrite(STDERR, "ipc_peer.php: TOPO_IPC_INBOX_KEY / TOPO_IPC_BOARD_KEY are not set; run me with `topo up`\n");
    exit(2);
}
const FROM_PYTHON = 1;
const FROM_PHP = 2;
const REPLY_AT = 256;  // Python writes at offset 0, PHP at 256

$queue = msg_get_queue((int) $inbox_key);
$board = shmop_open((int) $board_key, "w", 0, 0);  // "w": an existing segment, read and write
if ($board === false) {
    fwrite(STDERR, "ipc_peer.php: cannot open the shared-memory segment\n");
    exit(1);
}
// Wait for Python's "I wrote N bytes" (type FROM_PYTHON), serialisation off.
if (!msg_receive($queue, FROM_PYTHON, $type, 8192, $length, false, 0, $error)) {
    fwrite(STDERR, "ipc_peer.php: msg_receive failed ($error)\n");
    exit(1);
}
$text = shmop_read($board, 0, (int) $length);
echo "php: read '$text' from shared memory\n";
$reply = strtoupper($text) . ", READ BY PHP";
shmop_write($board, $reply, REPLY_AT);
if (!msg_send($queue, FROM_PHP, (string) strlen($reply), false, true, $error)) {
    fwrite(STDERR, "ipc_peer.php: msg_send failed ($error)\n");
    exit(1);
}
echo "php: wrote my answer at offset " . REPLY_AT . "\n";
