"""`python -m tfxent bench` (command line: tfxent/cli/bench.py), in one process per job:

* driver.py: the parent: plans the run, compiles the machine-limits helper, starts the
  workers and prints the report;
* worker.py: one thread count's timings, or one memory case, in a fresh process;
* calls.py: the calls a worker times and the check that tfxent's op computed them;
* limits.py and limits.cc: the machine's bandwidth, cache and the kernels' exp cost;
* cases.py: docs/performance.md's shapes, the case plan and the roofline;
* report.py: rows, tables and the performance targets.
"""
