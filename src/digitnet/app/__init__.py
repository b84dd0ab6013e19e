"""The applications around the network: the ``digitnet`` command, the drawing page,
pictures and the report, MNIST-style image preprocessing, progress display.

They use :mod:`digitnet.nn`, :mod:`digitnet.train`, :mod:`digitnet.data` and
:mod:`digitnet.files`; none of those imports anything from here.
"""
