"""C kernels the C backend swaps in at compile time; the graphs themselves stay standard.

PyTensor's C Elemwise loop calls libm's scalar ``tanh`` (about 12 ns per element), while NumPy
evaluates tanh with SIMD code several times faster; in a tanh network that one op dominated
the policy's surrogate-gradient time. `FastTanh` computes the same function in a contiguous
loop that GCC vectorises with glibc's libmvec ``tanh`` (4 ULP). The rewrite `local_fast_tanh` replaces ``Elemwise{tanh}`` with it, and only the
project's C mode includes the rewrite (tag ``policyopt_fast_tanh``), so the Numba and JAX
backends compile the untouched graph. Gradients are built before compilation from the standard
tanh, so the rewrite never changes what is differentiated.
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


class FastTanh(COp):
    """y = tanh(x) elementwise for float32/float64 arrays (C: vectorised loop)."""

    __props__ = ()

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

    def c_code_cache_version(self):
        return (3,)

    def c_code(self, node, name, inputs, outputs, sub):
        (x,), (z,), fail = inputs, outputs, sub["fail"]
        ctype = "double" if node.inputs[0].dtype == "float64" else "float"
        func = "tanh" if ctype == "double" else "tanhf"
        return f"""
        {{
            PyArrayObject* xc = PyArray_GETCONTIGUOUS({x});
            if (!xc) {{ {fail}; }}
            int nd = PyArray_NDIM(xc);
            int reuse = {z} && PyArray_NDIM({z}) == nd && PyArray_IS_C_CONTIGUOUS({z})
                        && PyArray_TYPE({z}) == PyArray_TYPE(xc);
            for (int i = 0; reuse && i < nd; ++i)
                reuse = PyArray_DIMS({z})[i] == PyArray_DIMS(xc)[i];
            if (!reuse) {{
                Py_XDECREF({z});
                {z} = (PyArrayObject*)PyArray_EMPTY(nd, PyArray_DIMS(xc), PyArray_TYPE(xc), 0);
                if (!{z}) {{ Py_DECREF(xc); {fail}; }}
            }}
            const npy_intp n = PyArray_SIZE(xc);
            const {ctype}* __restrict__ xp = (const {ctype}*)PyArray_DATA(xc);
            {ctype}* __restrict__ zp = ({ctype}*)PyArray_DATA({z});
            for (npy_intp i = 0; i < n; ++i) zp[i] = {func}(xp[i]);
            Py_DECREF(xc);
        }}
        """


fast_tanh = FastTanh()


@node_rewriter([Elemwise])
def local_fast_tanh(fgraph, node):
    if isinstance(node.op.scalar_op, ps.Tanh) and node.outputs[0].dtype in ("float32",
                                                                               "float64"):
        return [fast_tanh(node.inputs[0])]
    return None


# After canonicalize/stabilize (1, 1.5) and BLAS (1.7), before fusion (49) would hide the tanh
# inside a Composite.
optdb.register("policyopt_fast_tanh_rewrite", dfs_rewriter(local_fast_tanh), FAST_TANH_TAG,
               position=1.8)
