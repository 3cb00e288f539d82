"""get_local_topology() in Mooncake's shape: {"cpu:N": [[preferred NICs], [other NICs]], "cuda:K": [...]},
built from a real daemon's NICs (tcp;ofi_rxm on lo, and eth0 where there is one) and a topology the daemon
is given (the topology setting: an hwloc XML that places those NICs and two GPUs on two NUMA nodes). The
GPUs a process sees come from the CUDA driver stand-in (build/tests/libcuda-standin.so: bus ids 18:00.0 and
28:00.0), which checks mcefa's bookkeeping, not a GPU."""
import json
import os
import subprocess
import sys

import pytest

from conftest import BUILD, Daemon, free_ports, peer_secret

STANDIN = os.path.join(BUILD, "tests", "libcuda-standin.so")

# One package, NUMA node and CPU per GPU, its switch holding the GPU and, when given, a NIC. hwloc reads
# only whole exports: every CPU-side object names its CPUs and nodes (the sets, as hex masks).
SETS = 'cpuset="{m:#x}" complete_cpuset="{m:#x}" nodeset="{m:#x}" complete_nodeset="{m:#x}"'
PACKAGE = """
  <object type="Package" os_index="{node}" %s>
   <object type="NUMANode" os_index="{node}" %s/>
   <object type="PU" os_index="{node}" %s/>
""" % (SETS, SETS, SETS) + """   <object type="Bridge" bridge_type="0-1" depth="0" bridge_pci="0000:[{bus:x}-{bus_end:x}]">
    <object type="Bridge" bridge_type="1-1" depth="1" bridge_pci="0000:[{bus1:x}-{bus_end:x}]" pci_busid="0000:{bus:x}:00.0">
     <object type="PCIDev" pci_busid="0000:{gpu:x}:00.0" pci_type="0302 [10de:2335] [10de:18be] a1"/>
     {nic}
    </object>
   </object>
  </object>"""
NIC = """<object type="PCIDev" pci_busid="0000:{bus:x}:00.0" pci_type="0200 [1d0f:efa2] [1d0f:efa2] 00">
      <object type="OSDev" name="{name}" osdev_type="3"/></object>"""


def topology_xml(nics_by_node):
    """Node N gets GPU (0x18 + 0x10 N):00.0, the stand-in's physical GPU N, and NIC nics_by_node[N]."""
    packages = []
    for node, name in enumerate(nics_by_node):
        bus = 0x10 + 0x10 * node
        nic = NIC.format(bus=bus + 9, name=name) if name else ""
        packages.append(PACKAGE.format(node=node, m=1 << node, bus=bus, bus1=bus + 1, bus_end=bus + 0xf,
                                       gpu=bus + 8, nic=nic))
    machine = SETS.format(m=(1 << len(nics_by_node)) - 1)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<topology version="2.0">\n <object type="Machine" '
            'os_index="0" %s>%s\n </object>\n</topology>\n' % (machine, "".join(packages)))


def tcp_nics():
    """lo, and eth0 when libfabric's tcp provider offers it here."""
    out = subprocess.run(["fi_info", "-p", "tcp;ofi_rxm"], capture_output=True, text=True)
    if out.returncode:
        pytest.skip("libfabric's tcp;ofi_rxm provider is not available here")
    domains = {line.split(":", 1)[1].strip() for line in out.stdout.splitlines() if "domain:" in line}
    return ["lo"] + (["eth0"] if "eth0" in domains else [])


@pytest.fixture
def placed(tmp_path):
    """A daemon on lo (node 1, beside GPU 28:00.0) and eth0 if any (node 0, beside GPU 18:00.0)."""
    nics = tcp_nics()
    far = nics[1] if len(nics) > 1 else None
    xml = tmp_path / "topology.xml"
    xml.write_text(topology_xml([far, "lo"]))
    d = Daemon("--provider=tcp;ofi_rxm", "--nics=" + ",".join(nics), "--topology=%s" % xml,
               "--peer_port=%d" % free_ports(1), "--peer_secret_file=" + peer_secret())
    yield d, nics
    d.stop()


def daemon_nics(d):
    out = subprocess.run([os.path.join(BUILD, "mcefactl"), "--socket=" + d.sock, "--json", "nics"],
                         capture_output=True, text=True, check=True)
    return {n["name"]: n["numa_node"] for n in json.loads(out.stdout)}


def topology(sock, device_name=None, **env):
    """get_local_topology() of a fresh process (the CUDA driver a process loads is fixed for its life)."""
    code = ("import json, sys; from mcefa import TransferEngine; "
            "print(TransferEngine().get_local_topology(json.loads(sys.argv[1])))")
    e = dict(os.environ, MCEFAD_SOCKET=sock, PYTHONPATH=os.path.join(BUILD, "python"), **env)
    out = subprocess.run([sys.executable, "-c", code, json.dumps(device_name)], capture_output=True, text=True,
                         env=e)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def check_shape(topo, nics):
    """Every entry is [[preferred], [others]] and the two split the NICs shown."""
    for key, entry in topo.items():
        assert key.startswith(("cpu:", "cuda:")) and key.split(":")[1].isdigit(), key
        assert isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, list) for x in entry), entry
        pref, other = entry
        assert not set(pref) & set(other)
        assert sorted(pref + other) == sorted(nics), (key, entry, nics)


def split(entry):
    return set(entry[0]), set(entry[1])


def test_cpu_entries_follow_the_nics_numa_nodes(placed):
    d, nics = placed
    known = daemon_nics(d)
    assert sorted(known) == sorted(nics)  # the names come from the daemon's NIC list
    assert known["lo"] == 1  # from the topology setting
    topo = topology(d.sock, MCEFA_CUDA_LIBRARY="/nonexistent/libcuda.so.1")
    assert sorted(topo) == ["cpu:0", "cpu:1"]  # no driver in this process: no cuda entries
    check_shape(topo, nics)
    far = set(nics) - {"lo"}
    assert split(topo["cpu:1"]) == ({"lo"}, far)
    assert split(topo["cpu:0"]) == (far, {"lo"})


@pytest.mark.skipif(not os.path.exists(STANDIN), reason="built without the CUDA headers: no driver stand-in")
def test_gpus_prefer_their_pci_neighbours(placed):
    d, nics = placed
    env = dict(MCEFA_CUDA_LIBRARY=STANDIN, MCEFA_STANDIN_GPUS="2")
    topo = topology(d.sock, **env)
    assert sorted(topo) == ["cpu:0", "cpu:1", "cuda:0", "cuda:1"]
    check_shape(topo, nics)
    far = set(nics) - {"lo"}
    assert split(topo["cuda:1"]) == ({"lo"}, far)  # 28:00.0 shares lo's switch
    if far:
        assert split(topo["cuda:0"]) == (far, {"lo"})  # 18:00.0 shares eth0's
    else:
        assert split(topo["cuda:0"]) == ({"lo"}, set())  # nothing on its node: the nearest there is
    # cuda:K is this process's ordinal: with only physical GPU 1 visible, cuda:0 is 28:00.0.
    topo = topology(d.sock, CUDA_VISIBLE_DEVICES="1", **env)
    assert sorted(topo) == ["cpu:0", "cpu:1", "cuda:0"]
    assert split(topo["cuda:0"]) == ({"lo"}, far)


@pytest.mark.skipif(not os.path.exists(STANDIN), reason="built without the CUDA headers: no driver stand-in")
def test_device_filter_keeps_the_named_nics(placed):
    d, nics = placed
    env = dict(MCEFA_CUDA_LIBRARY=STANDIN, MCEFA_STANDIN_GPUS="2")
    topo = topology(d.sock, "lo", **env)
    check_shape(topo, ["lo"])
    assert split(topo["cpu:0"]) == (set(), {"lo"})
    # GPU 18:00.0's own node has no NIC left: preference falls to the nearest remaining one.
    assert split(topo["cuda:0"]) == ({"lo"}, set())
    topo = topology(d.sock, "mlx5_0,nosuch", **env)
    check_shape(topo, [])
    assert sorted(topo) == ["cpu:0", "cpu:1", "cuda:0", "cuda:1"]
    assert topology(d.sock, "", **env) == topology(d.sock, None, **env)  # "": no filter, as in Mooncake


def test_on_this_host_without_a_topology_setting(daemon_pair):
    """The host's own sysfs: its NUMA nodes, and lo (no PCI device, no NUMA node) never preferred."""
    a, _ = daemon_pair
    topo = topology(a.sock, MCEFA_CUDA_LIBRARY="/nonexistent/libcuda.so.1")
    nodes = sorted(int(n[4:]) for n in os.listdir("/sys/devices/system/node")
                   if n.startswith("node") and n[4:].isdigit())
    assert sorted(topo) == sorted("cpu:%d" % n for n in nodes)
    check_shape(topo, ["lo"])
    assert all(entry == [[], ["lo"]] for entry in topo.values())


def test_before_initialize_and_bad_argument(daemon, monkeypatch):
    from mcefa import TransferEngine
    te = TransferEngine()
    assert isinstance(json.loads(te.get_local_topology()), dict)  # as in Mooncake: no initialize needed
    with pytest.raises(TypeError):
        te.get_local_topology(3)
    monkeypatch.setenv("MCEFAD_SOCKET", daemon.sock + ".absent")
    with pytest.raises(RuntimeError, match="no mcefad listens"):
        TransferEngine().get_local_topology()
