"""Code shared by every dockyard component.

Nothing here imports from `scheduler` or `executor`, and the modules the
executor needs (`framework.mesos.recordio`, `messages`, `executor_driver`)
import only the standard library and addict.
"""
