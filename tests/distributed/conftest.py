def pytest_ignore_collect(collection_path, config):
    """``ranks/`` holds tests that run inside MPI ranks (``pytest --with-mpi`` under mpiexec,
    started by the tests here); a plain pytest run does not collect them."""
    if collection_path.parent.name == "ranks" and not config.getoption("--with-mpi", False):
        return True
    return None
