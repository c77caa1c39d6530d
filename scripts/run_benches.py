#!/usr/bin/env python3
"""Runs every benchmark in turn: C programs, and bench/**/bench_*.py scripts
(given the nexus binary in NEXUS_BIN). Each prints its own table."""
import argparse
import os
import subprocess
import sys

ap = argparse.ArgumentParser()
ap.add_argument('--nexus', required=True)
ap.add_argument('benches', nargs='*')
args = ap.parse_args()
env = dict(os.environ)
env['NEXUS_BIN'] = os.path.abspath(args.nexus)
rc = 0
for bench in args.benches:
    print('== %s' % os.path.basename(bench), flush=True)
    cmd = [sys.executable, bench] if bench.endswith('.py') else [os.path.abspath(bench)]
    rc |= subprocess.call(cmd, env=env)
sys.exit(1 if rc else 0)
