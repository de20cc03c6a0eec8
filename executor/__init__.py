"""The dockyard executor: runs tasks for the framework on an agent, each in its own container.

Started by a Mesos agent as a fresh process: modules on the start-up path import
only the standard library and addict.
"""
