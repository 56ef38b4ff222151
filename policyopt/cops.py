"""C kernels the C backend swaps in at compile time; the graphs themselves stay standard.

PyTensor's C Elemwise loop calls libm's scalar ``tanh`` (about 12 ns per element), while NumPy
evaluates tanh with SIMD code several times faster; in a tanh network that one op dominated the
policy's surrogate-gradient time. `FastTanh` computes the same function in a contiguous loop
that GCC vectorises with glibc's libmvec ``tanh`` (4 ULP). The rewrite `local_fast_tanh`
replaces ``Elemwise{tanh}`` with it, and only the project's C mode includes the rewrite (tag
``policyopt_fast_tanh``), so the Numba and JAX backends compile the untouched graph. Gradients
are built before compilation from the standard tanh, so the rewrite never changes what is
differentiated.

A hidden layer is ``tanh(x W + b)``: the bias add is an Elemwise of its own in front of the tanh
(the tanh kernel keeps PyTensor's fusion from merging them), one more pass over a 50,000 x 100
array. `local_fast_bias_tanh` folds it into `FastBiasTanh`, which adds the bias row and takes
the tanh in the same loop; the sum is the same IEEE addition, so the values do not change.
"""
import numpy as np
import pytensor.tensor as pt
from pytensor.compile import optdb
from pytensor.graph.basic import Apply
from pytensor.graph.rewriting.basic import dfs_rewriter, node_rewriter
from pytensor.link.c.op import COp
from pytensor.scalar import basic as ps
from pytensor.tensor.elemwise import Elemwise

FAST_TANH_TAG = "policyopt_fast_tanh"


class _TanhKernel(COp):
    """What the tanh kernels share: headers, compiler flags and the C output-buffer logic."""

    __props__ = ()

    def c_headers(self, **kwargs):
        return ["<math.h>"]

    def c_compile_args(self, **kwargs):
        # Not -ffast-math: GCC < 13 then links crtfastmath.o, whose constructor switches the
        # whole process to flush-denormals-to-zero. Defining __FAST_MATH__ is what makes glibc's
        # <math.h> declare the SIMD (libmvec) variants that the vectoriser calls; the other two
        # flags let it vectorise a loop of libm calls. Neither changes tanh's results.
        # -mprefer-vector-width=512: use 8-wide libmvec calls where -march allows AVX-512
        # (GCC prefers 256-bit vectors otherwise); a no-op on other CPUs.
        return ["-O3", "-fno-math-errno", "-fno-trapping-math", "-D__FAST_MATH__",
                "-mprefer-vector-width=512"]

    @staticmethod
    def _c_types(node):
        """(C element type, C tanh function) for the node's dtype."""
        return ("double", "tanh") if node.inputs[0].dtype == "float64" else ("float", "tanhf")

    @staticmethod
    def _c_output_like(z, xc, cleanup, fail):
        """C that keeps the output `z` when it is a C-contiguous array of `xc`'s shape and type,
        else allocates a new one (running `cleanup` before `fail` if that fails)."""
        return f"""
            int nd = PyArray_NDIM({xc});
            int reuse = {z} && PyArray_NDIM({z}) == nd && PyArray_IS_C_CONTIGUOUS({z})
                        && PyArray_TYPE({z}) == PyArray_TYPE({xc});
            for (int i = 0; reuse && i < nd; ++i)
                reuse = PyArray_DIMS({z})[i] == PyArray_DIMS({xc})[i];
            if (!reuse) {{
                Py_XDECREF({z});
                {z} = (PyArrayObject*)PyArray_EMPTY(nd, PyArray_DIMS({xc}), PyArray_TYPE({xc}), 0);
                if (!{z}) {{ {cleanup} {fail}; }}
            }}"""


class FastTanh(_TanhKernel):
    """y = tanh(x) elementwise for float32/float64 arrays (C: vectorised loop)."""

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        if x.dtype not in ("float32", "float64"):
            raise TypeError(f"FastTanh needs a float32/float64 input, got {x.dtype}")
        return Apply(self, [x], [x.type()])

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = np.tanh(inputs[0])

    def infer_shape(self, fgraph, node, input_shapes):
        return input_shapes

    def L_op(self, inputs, outputs, output_grads):
        (y,), (gy,) = outputs, output_grads
        return [gy * (1. - pt.sqr(y))]

    def c_code_cache_version(self):
        return (4,)

    def c_code(self, node, name, inputs, outputs, sub):
        (x,), (z,), fail = inputs, outputs, sub["fail"]
        ctype, func = self._c_types(node)
        return f"""
        {{
            PyArrayObject* xc = PyArray_GETCONTIGUOUS({x});
            if (!xc) {{ {fail}; }}
            {self._c_output_like(z, "xc", "Py_DECREF(xc);", fail)}
            const npy_intp n = PyArray_SIZE(xc);
            const {ctype}* __restrict__ xp = (const {ctype}*)PyArray_DATA(xc);
            {ctype}* __restrict__ zp = ({ctype}*)PyArray_DATA({z});
            for (npy_intp i = 0; i < n; ++i) zp[i] = {func}(xp[i]);
            Py_DECREF(xc);
        }}
        """


fast_tanh = FastTanh()


class FastBiasTanh(_TanhKernel):
    """y_B_N = tanh(x_B_N + b_1_N) for float32/float64 matrices and a bias row (C: one
    vectorised loop per row)."""

    def make_node(self, x, b):
        x, b = pt.as_tensor_variable(x), pt.as_tensor_variable(b)
        if x.ndim != 2 or b.ndim != 2 or not b.type.broadcastable[0]:
            raise TypeError("FastBiasTanh needs a matrix and a (1, n) bias row")
        if x.dtype not in ("float32", "float64") or b.dtype != x.dtype:
            raise TypeError(f"FastBiasTanh needs float32/float64 inputs of one dtype, got "
                            f"{x.dtype} and {b.dtype}")
        return Apply(self, [x, b], [x.type()])

    def perform(self, node, inputs, output_storage):
        x, b = inputs
        output_storage[0][0] = np.tanh(x + b)

    def infer_shape(self, fgraph, node, input_shapes):
        return [input_shapes[0]]

    def L_op(self, inputs, outputs, output_grads):
        (y,), (gy,) = outputs, output_grads
        gz = gy * (1. - pt.sqr(y))
        return [gz, gz.sum(axis=0, keepdims=True)]

    def c_code_cache_version(self):
        return (2,)

    def c_code(self, node, name, inputs, outputs, sub):
        (x, b), (z,), fail = inputs, outputs, sub["fail"]
        ctype, func = self._c_types(node)
        return f"""
        {{
            if (PyArray_DIMS({b})[0] != 1 || PyArray_DIMS({b})[1] != PyArray_DIMS({x})[1]) {{
                PyErr_Format(PyExc_ValueError, "FastBiasTanh: bias shape (%ld, %ld) does not "
                             "fit input shape (%ld, %ld)", (long)PyArray_DIMS({b})[0],
                             (long)PyArray_DIMS({b})[1], (long)PyArray_DIMS({x})[0],
                             (long)PyArray_DIMS({x})[1]);
                {fail};
            }}
            PyArrayObject* xc = PyArray_GETCONTIGUOUS({x});
            if (!xc) {{ {fail}; }}
            PyArrayObject* bc = PyArray_GETCONTIGUOUS({b});
            if (!bc) {{ Py_DECREF(xc); {fail}; }}
            {self._c_output_like(z, "xc", "Py_DECREF(xc); Py_DECREF(bc);", fail)}
            const npy_intp m = PyArray_DIMS(xc)[0], n = PyArray_DIMS(xc)[1];
            const {ctype}* __restrict__ bp = (const {ctype}*)PyArray_DATA(bc);
            for (npy_intp i = 0; i < m; ++i) {{
                const {ctype}* __restrict__ xp = (const {ctype}*)PyArray_DATA(xc) + i * n;
                {ctype}* __restrict__ zp = ({ctype}*)PyArray_DATA({z}) + i * n;
                for (npy_intp j = 0; j < n; ++j) zp[j] = {func}(xp[j] + bp[j]);
            }}
            Py_DECREF(xc);
            Py_DECREF(bc);
        }}
        """


fast_bias_tanh = FastBiasTanh()


@node_rewriter([Elemwise])
def local_fast_tanh(fgraph, node):
    if isinstance(node.op.scalar_op, ps.Tanh) and node.outputs[0].dtype in ("float32",
                                                                               "float64"):
        return [fast_tanh(node.inputs[0])]
    return None


def _bias_row(v, like):
    """Whether `v` can be FastBiasTanh's bias for a matrix like `like`: a (1, n) row."""
    return (v.ndim == 2 and v.type.broadcastable == (True, False) and v.dtype == like.dtype
            and not like.type.broadcastable[0])


@node_rewriter([FastTanh])
def local_fast_bias_tanh(fgraph, node):
    """FastTanh(x + b_row) -> FastBiasTanh(x, b_row) when nothing else reads x + b_row."""
    (s,) = node.inputs
    add = s.owner
    if (add is None or not isinstance(add.op, Elemwise) or not isinstance(add.op.scalar_op, ps.Add)
            or len(add.inputs) != 2 or s.ndim != 2 or len(fgraph.clients[s]) != 1):
        return None
    x, b = add.inputs
    if not _bias_row(b, x):
        x, b = b, x
    if not _bias_row(b, x) or x.type.broadcastable != s.type.broadcastable:
        return None
    return [fast_bias_tanh(x, b)]


# After canonicalize/stabilize (1, 1.5) and BLAS (1.7), before fusion (49) would hide the tanh
# inside a Composite; the bias fold runs right after the tanh swap.
optdb.register("policyopt_fast_tanh_rewrite", dfs_rewriter(local_fast_tanh), FAST_TANH_TAG,
               position=1.8)
optdb.register("policyopt_fast_bias_tanh_rewrite", dfs_rewriter(local_fast_bias_tanh),
               FAST_TANH_TAG, position=1.81)
