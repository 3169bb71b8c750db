"""Redis's time per token of a streamed answer: the publish script (scripts.rs, NORMALIZE
inlined as the node does) run N times with redis-benchmark (1 client, no pipelining) for the
deltas of one message of one user, against a private redis-server on a free port (never
6379). Prints Redis's own `usec_per_call` (INFO commandstats), the Stream's XLEN, MEMORY
USAGE and `hb`. A git revision uses that version's script (before merged deltas: every
delta its own entry); WORKTREE the work tree's, with the merge key and text as ARGV and the
cap from $CAP (default 4096; 0 merges nothing).

    python3 benches/scripts/redis_delta_cost.py 5d0777c 20000 100
    python3 benches/scripts/redis_delta_cost.py WORKTREE 20000 100
"""
import os, re, socket, subprocess, sys, time
rev, n, hl = sys.argv[1], int(sys.argv[2]), sys.argv[3]
repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
src = open(f'{repo}/server/src/cluster/scripts.rs').read() if rev == 'WORKTREE' else \
    subprocess.check_output(['git', '-C', repo, 'show', f'{rev}:server/src/cluster/scripts.rs'], text=True)
consts = dict(re.findall(r'const (\w+): &str = r"(.*?)";\n', src, re.S))
script = consts['PUBLISH_USER'].replace('-- NORMALIZE', consts['NORMALIZE'])
s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()
assert port != 6379
srv = subprocess.Popen(['redis-server', '--port', str(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
cli = lambda *a: subprocess.check_output(['redis-cli', '-p', str(port), *a], text=True).strip()
for _ in range(100):
    try:
        if subprocess.run(['redis-cli', '-p', str(port), 'PING'], capture_output=True, text=True).stdout.strip() == 'PONG':
            break
    except OSError:
        pass
    time.sleep(0.05)
try:
    sha = cli('SCRIPT', 'LOAD', script)
    text = 'tok0001 '
    head = '{"type":"message_delta","seq":'
    tail = ',"run_id":"r1","ts":"2026-12-02T10:00:00.000Z","priority":"normal","data":{"message_id":"m1","delta":"%s"}}' % text
    keys = ['ac:{u}:m', 'ac:{u}:h', 'ac:floor', 'ac:{u}:n', 'ac:i:-', 'ac:dl']
    args = [head, tail, '1', hl, '300000', '', '300000', 'ac:{u}:e', 'ac:node:', '7', '', '0', 'u', str(8 << 20), '96']
    if rev == 'WORKTREE':
        args += ['2:r1"m1"', text, os.environ.get('CAP', '4096')]
    cli('CONFIG', 'RESETSTAT')
    out = subprocess.check_output(['redis-benchmark', '-p', str(port), '-n', str(n), '-c', '1', '-q',
                                   'EVALSHA', sha, '6', *keys, *args], text=True)
    stats = cli('INFO', 'commandstats')
    ev = re.search(r'cmdstat_evalsha:calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)', stats)
    print(f'rev={rev} tokens={n} history_len={hl}')
    print('  redis-benchmark:', out.strip().splitlines()[-1].strip())
    print(f'  evalsha calls={ev.group(1)} usec_per_call={ev.group(3)} (inside Redis)')
    print('  XLEN', cli('XLEN', 'ac:{u}:h'), ' MEMORY USAGE h', cli('MEMORY', 'USAGE', 'ac:{u}:h', 'SAMPLES', '0'),
          ' hb', cli('HGET', 'ac:{u}:m', 'hb'))
finally:
    srv.kill(); srv.wait()
