#!/usr/bin/env python3
"""Runs every benchmark program in turn; each prints its own table."""
import os
import subprocess
import sys

env = dict(os.environ)
env['NEXUS_BIN'] = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[1] == '--nexus' else ''
progs = sys.argv[3:] if sys.argv[1:2] == ['--nexus'] else sys.argv[1:]
rc = 0
for prog in progs:
    print('== %s' % os.path.basename(prog), flush=True)
    rc |= subprocess.call([os.path.abspath(prog)], env=env)
sys.exit(1 if rc else 0)
