"""Sphinx configuration of distgrad's API reference (``make docs``; warnings are errors).

The reference pages are generated at build time from the package itself (``apipages.py``): every
public callable appears once, on the page of the first public module that exports it, so a new
function or class is in the reference as soon as it is exported, with its docstring.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import apipages  # noqa: E402

project = "distgrad"
author = "the distgrad authors"
copyright = "the distgrad authors, Apache-2.0"
release = apipages.version()

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_inherit_docstrings = True
napoleon_google_docstring = True
napoleon_numpy_docstring = True
exclude_patterns = ["_build", "*.md"]
html_theme = "alabaster"
html_static_path = []
nitpicky = False


def setup(app):
    app.connect("builder-inited", lambda app: apipages.write(os.path.join(app.srcdir, "api")))
