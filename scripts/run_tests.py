#!/usr/bin/env python3
"""Runs NexusCore's tests and prints one closing line: 'N passed, N failed[, N skipped]'.

C test programs use cmocka; each '[       OK ]', '[  FAILED  ]' and '[  SKIPPED ]' line
counts as one test. A program that dies without reporting a failure (a crash, a
sanitizer report, a timeout) counts as one failure. Multi-process tests are Python
unittest files under tests/integration/, run with the nexus binary in NEXUS_BIN.
"""
import argparse
import os
import re
import subprocess
import sys
import time

TIMEOUT_S = int(os.environ.get('NX_TEST_TIMEOUT', '300'))  # per test program
CMOCKA_RE = re.compile(r'^\[\s*(OK|FAILED|SKIPPED)\s*\] (\S+)\s*$')


def run(cmd, env):
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=TIMEOUT_S)
        out, code = proc.stdout.decode(errors='replace'), proc.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b'').decode(errors='replace') + '\n[timeout after %ds]' % TIMEOUT_S
        code = -1
    return out, code, time.monotonic() - start


def count_cmocka(out):
    """Counts each test once: cmocka repeats failed and skipped names in its summary."""
    seen = {'OK': set(), 'FAILED': set(), 'SKIPPED': set()}
    for line in out.splitlines():
        m = CMOCKA_RE.match(line)
        if m:
            seen[m.group(1)].add(m.group(2))
    failed = seen['FAILED']
    counts = {'passed': len(seen['OK'] - failed), 'failed': len(failed),
              'skipped': len(seen['SKIPPED'] - failed)}
    return counts, sorted(failed)


RAN_RE = re.compile(r'^Ran (\d+) tests? in', re.M)
SUMMARY_RE = re.compile(r'^(OK|FAILED)(?: \((.*)\))?\s*$', re.M)
FAILED_NAME_RE = re.compile(r'^(?:FAIL|ERROR): (\w+) \(', re.M)


def count_unittest(out):
    """From unittest's own summary ("Ran N tests", "OK (skipped=1)", "FAILED (failures=1,
    errors=2)"), so a test that prints does not hide its result line."""
    counts = {'passed': 0, 'failed': 0, 'skipped': 0}
    ran = RAN_RE.findall(out)
    summary = SUMMARY_RE.findall(out)
    failed_names = FAILED_NAME_RE.findall(out)
    if not ran or not summary:
        return counts, failed_names
    total = int(ran[-1])
    fields = dict(kv.split('=') for kv in summary[-1][1].split(', ') if '=' in kv)
    failed = int(fields.get('failures', 0)) + int(fields.get('errors', 0)) + \
        int(fields.get('unexpected successes', 0))
    counts['skipped'] = int(fields.get('skipped', 0))
    counts['failed'] = failed
    counts['passed'] = total - failed - counts['skipped']
    return counts, failed_names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--nexus', required=True)
    ap.add_argument('--filter', default='')
    ap.add_argument('--integration', default=None)
    ap.add_argument('programs', nargs='*')
    args = ap.parse_args()

    env = dict(os.environ)
    env['NEXUS_BIN'] = os.path.abspath(args.nexus)
    env.setdefault('CMOCKA_MESSAGE_OUTPUT', 'STDOUT')
    jobs = [('c', os.path.abspath(p)) for p in args.programs]
    if args.integration and os.path.isdir(args.integration):
        for name in sorted(os.listdir(args.integration)):
            if name.startswith('test_') and name.endswith('.py'):
                jobs.append(('py', os.path.abspath(os.path.join(args.integration, name))))
    jobs = [j for j in jobs if args.filter in os.path.basename(j[1])]

    total = {'passed': 0, 'failed': 0, 'skipped': 0}
    failures = []
    for kind, path in jobs:
        name = os.path.basename(path)
        cmd = [path] if kind == 'c' else [sys.executable, path, '-v']
        out, code, secs = run(cmd, env)
        counts, failed_names = (count_cmocka if kind == 'c' else count_unittest)(out)
        if code != 0 and counts['failed'] == 0:
            counts['failed'] = 1
            failed_names.append('%s (exit %d)' % (name, code))
        if counts['passed'] + counts['failed'] + counts['skipped'] == 0:
            counts['failed'] = 1
            failed_names.append('%s (ran no test)' % name)
        for k in total:
            total[k] += counts[k]
        status = 'FAIL' if counts['failed'] else 'ok'
        print('%-4s %-40s %3d passed %3d failed %3d skipped  %6.1fs' % (
            status, name, counts['passed'], counts['failed'], counts['skipped'], secs), flush=True)
        if counts['failed']:
            failures.append((name, failed_names, out))

    for name, names, out in failures:
        print('\n===== %s: %s =====' % (name, ', '.join(names)))
        tail = out.splitlines()[-80:]
        print('\n'.join(tail))
    line = '%d passed, %d failed' % (total['passed'], total['failed'])
    if total['skipped']:
        line += ', %d skipped' % total['skipped']
    print(line)
    return 1 if total['failed'] or not jobs else 0


if __name__ == '__main__':
    sys.exit(main())
