"""Fault drills: break the sweep for real (SIGKILL, a lost node, a dead tracking server, a
torn results file, a tampered checkpoint, a diverging model) and check that nothing is lost.

`make drills` (`python -m cluster.drills`) runs them all and prints a table; the tests run
each one. See `cluster.drills.scenarios`.
"""
