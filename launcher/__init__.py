"""distgrad-run: start a distgrad program on one or many nodes through mpiexec or srun.

The launcher only starts processes; the library finds its world from MPI itself.
It uses the standard library only and imports nothing from distgrad.
"""


class LaunchError(Exception):
    """Bad input or an unusable environment; the message says what to do."""
