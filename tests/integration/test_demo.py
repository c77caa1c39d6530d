"""The README's main job keeps working: scripts/demo.sh (what `./run.sh demo`
runs after building) starts a 3-node mesh (one bootstrap node, two joined by token), uses the KV store and the ledger,
runs the example agents, and stops cleanly."""
import os
import re
import subprocess
import unittest

from harness import NEXUS

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')


class DemoTest(unittest.TestCase):
    def test_demo_runs_the_whole_flow(self):
        r = subprocess.run(['bash', os.path.join(ROOT, 'scripts', 'demo.sh'), NEXUS],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=180)
        self.assertEqual(r.returncode, 0, r.stdout[-3000:])
        out = r.stdout
        members = re.findall(r'^[0-9a-f]{16}  127\.0\.0\.1:\d+\s+alive ', out, re.M)
        self.assertEqual(len(members), 3, out)
        self.assertIn(' leader ', out)
        self.assertEqual(out.count('joined: admitted by the cluster'), 2, out)
        self.assertIn('hello, mesh', out)
        self.assertIn('ok: 2 transactions, supply 100', out)
        self.assertIn('"greeting": "hello from sh"', out)
        self.assertIn('"words": 6', out)
        self.assertIn('"total": 10', out)  # the session kept its context across members
        self.assertEqual(out.count('--- charged '), 3, out)
        self.assertIn('supply 1100', out)
        self.assertIn('bad_sig=0', out)
        self.assertIn('demo done', out)


if __name__ == '__main__':
    unittest.main()
