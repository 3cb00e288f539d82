"""pip install ./client/python (after `make` at the top of the tree, which
builds libmcefa.a and the generated protocol headers this links against);
metadata in pyproject.toml. Offline: pip install --no-build-isolation ./client/python"""
import os

from setuptools import Extension, setup

here = os.path.dirname(os.path.abspath(__file__))
top = os.path.abspath(os.path.join(here, "..", ".."))
build = os.environ.get("MCEFA_BUILD", os.path.join(top, "build"))
lib = os.path.join(build, "libmcefa.a")
if not os.path.exists(lib):
    raise SystemExit("mcefa: %s not found; run `make` in %s first" % (lib, top))

# Name, version and description live in pyproject.toml.
setup(
    packages=["mcefa"],
    package_data={"mcefa": ["mooncake_shim/mooncake/*.py"]},
    ext_modules=[Extension("mcefa._mcefa", ["mcefa/_mcefa.c"],
                           include_dirs=[os.path.join(top, "client", "include"), os.path.join(top, "proto")],
                           extra_objects=[lib],
                           libraries=["protobuf-c", "numa", "pthread", "dl"])],
)
