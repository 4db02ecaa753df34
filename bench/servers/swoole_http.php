<?php
// Swoole (the PHP extension) hello world for bench/run_http.py: answers 200 "Hello World"
// to every request (the same body as the other servers of the HTTP bench; the shared
// reference ../shared/tools/swoole-servers/http_hello.php answers "hello world.").
// Usage: php -d extension=/tmp/anchors/swoole/swoole.so swoole_http.php HOST PORT [WORKERS] [base|process]
// Default: worker_num 1 in SWOOLE_BASE mode (one process serving, like the other rows).
$host    = $argv[1] ?? '127.0.0.1';
$port    = (int)($argv[2] ?? 9503);
$workers = (int)($argv[3] ?? 1);
$modeArg = strtolower($argv[4] ?? 'base');
if ($modeArg !== 'process' && $modeArg !== 'base') {
    fwrite(STDERR, "mode must be 'process' or 'base', got '{$modeArg}'\n");
    exit(2);
}
$http = new Swoole\Http\Server($host, $port, $modeArg === 'base' ? SWOOLE_BASE : SWOOLE_PROCESS);
$http->set([
    'worker_num' => $workers,
    'log_level'  => SWOOLE_LOG_ERROR,
]);
$http->on('start', function ($s) use ($host, $port, $workers, $modeArg) {
    echo "ready {$host}:{$port} workers={$workers} mode={$modeArg}\n";
});
$http->on('request', function ($request, $response) {
    $response->end('Hello World');
});
$http->start();
