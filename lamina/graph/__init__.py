"""The data-flow graph as an object: tracing (``trace``), the IR (``Graph``, ``Node``, ``Value``),
cost accounting (``costs``, ``summary``), passes (``passes``), running a graph (``executor``,
``compile``, with generated kernels in ``fusion`` and ``pool_fusion``) and drawing (``draw``)."""
from .ir import Graph, Node, Value  # noqa: F401
from .trace import TraceError, check_concrete, trace  # noqa: F401
from .summary import Summary, summary  # noqa: F401
from .compile import Compiled, compile  # noqa: F401,A001
