"""In-kernel domain runstate accounting: the eBPF program and its loader.

``runstate.bpf.c`` is the program, ``build.sh`` rebuilds the shipped CO-RE
object ``runstate.bpf.o`` from it, and :mod:`runstate.live.bpf.loader` loads it
through the system libbpf.
"""
