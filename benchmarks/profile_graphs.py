"""PyTensor profile of the policy graphs timed by bench_graphs.py.

Compiles the library's outputs (the surrogate and its gradient, the Gauss-Newton KL
Hessian-vector product TRPO uses, and the double-gradient one) with the project's compile mode
(``policyopt.backend.compile_mode()``) and ``profile=True``, calls them on the benchmark's data,
and prints the count of BLAS calls and PyTensor's profile summary (per op class, op, node).

    python benchmarks/profile_graphs.py [--graph surr|gnvp|hvp|all] [--rows 50000] [--calls 10]
"""
import argparse
import collections

import pytensor
from bench_graphs import make_problem  # beside this script

from policyopt import backend

BLAS_OPS = ("Dot22", "Dot22Scalar", "Gemm", "CGemv", "Gemv", "CGer", "Ger")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--graph", choices=("surr", "gnvp", "hvp", "all"), default="all")
    ap.add_argument("--rows", type=int, default=50000)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--debugprint", action="store_true", help="print the optimized graph")
    args = ap.parse_args(argv)
    policy, obs, a, prop, adist, adv, v_P = make_problem(args.rows, 0)
    graphs = {
        "surr": ([policy.obsfeat_B_Df, policy.a_B_Da, policy.proposal_actiondist_B_Pa,
                  policy.advantage_B], [policy.obj, policy.objgrad_P], (obs, a, prop, adv)),
        "gnvp": ([policy.obsfeat_B_Df, policy.proposal_actiondist_B_Pa, policy.v_P],
                 [policy.gnvp_P], (obs, adist, v_P)),
        "hvp": ([policy.obsfeat_B_Df, policy.proposal_actiondist_B_Pa, policy.v_P],
                [policy.hvp_P], (obs, adist, v_P)),
    }
    for key in (graphs if args.graph == "all" else (args.graph,)):
        inputs, outputs, data = graphs[key]
        fn = pytensor.function(inputs, outputs, mode=backend.compile_mode(), profile=True,
                               on_unused_input="ignore", name=key)
        ops = collections.Counter(type(n.op).__name__ for n in fn.maker.fgraph.toposort())
        print(f"=== {key}: {sum(ops[k] for k in BLAS_OPS)} BLAS calls; ops: "
              + ", ".join(f"{k} x{v}" for k, v in ops.most_common()))
        if args.debugprint:
            pytensor.dprint(fn)
        for _ in range(args.calls):
            fn(*data)
        fn.profile.summary(n_ops_to_print=12, n_apply_to_print=12)


if __name__ == "__main__":
    main()
