"""A Jupyter kernel manager whose clients never miss a reply (used by the tools that execute chapters).

nbclient waits for a cell's ``execute_reply`` with one ``poll`` as long as the
cell timeout.  When the event loop misses the socket's wake-up (seen after
cells that display ipywidgets, nbclient issue #312), a reply that is already
there is read only when that poll times out, so a cell "runs" for the whole
timeout.  Polling in slices of :data:`POLL_S` reads it at most a second late.
"""

from __future__ import annotations

import time

POLL_S = 1.0


def patient_kernel_manager():
    """jupyter_client's async kernel manager whose clients poll their sockets at least once a second.

    nbclient waits for a cell's ``execute_reply`` with one ``poll`` as long as
    the cell timeout.  When the event loop misses the socket's wake-up (seen
    here after cells that display ipywidgets, nbclient issue #312), the reply
    that is already there is only read when that poll times out: the cell
    "runs" for the whole timeout, 600 s, and then passes.  Polling in slices of
    :data:`POLL_S` reads it at most a second late; the overall timeout is kept.
    """
    from queue import Empty

    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.channels import AsyncZMQSocketChannel
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import Type, default

    class PatientChannel(AsyncZMQSocketChannel):
        async def get_msg(self, timeout: float | None = None):
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                step = POLL_S if deadline is None else min(POLL_S, max(0.0, deadline - time.monotonic()))
                try:
                    return await super().get_msg(timeout=step)
                except Empty:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise

    class PatientKernelClient(AsyncKernelClient):
        shell_channel_class = Type(PatientChannel)
        iopub_channel_class = Type(PatientChannel)
        control_channel_class = Type(PatientChannel)

    class PatientKernelManager(AsyncKernelManager):
        @default("client_factory")
        def _patient_client_factory(self):
            return PatientKernelClient

    return PatientKernelManager
