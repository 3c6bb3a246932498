"""The checking environment's guard: what a solution does to its kernel cannot turn into points.

Solutions and checks share one kernel, so a solution can rewrite whatever a check relies on (``expect`` through
``__globals__``, ``torch.allclose``, builtins, ``sys.modules``, import hooks, trace functions, IPython input
transformers, ``atexit``...). Blocking those one by one does not hold, so the grader does not try to: it makes
any change to the checking environment *visible from outside the kernel* and refuses the exercise that made it.

* The grader's first cell (before the instructor's set-up, before any student code) installs an audit hook
  (PEP 578: it cannot be removed) holding a secret key the worker left in a file, which the hook reads and deletes.
  The key and everything the hook needs live only in the hook's closure: nothing in the kernel's namespaces,
  modules or history refers to them, and the ways around that (``gc.get_objects``/``get_referrers``, ``ctypes``)
  are themselves audit events.
* After the set-up cells a ``seal`` event makes the hook record the checking environment: every loaded module's
  functions, classes (with their attributes) and submodules, ``sys`` hooks (``meta_path``, ``path_hooks``,
  ``path``, trace and profile functions, streams, display and except hooks), the ``atexit`` count, IPython's input
  and AST transformers, event callbacks and the shell's own methods, and the set-up's names in ``__main__``.
* From then on, audited operations that change how code runs (trace/profile functions, new audit hooks, ``ctypes``,
  ``gc`` object walks, setting a function's ``__code__``, threads) are recorded as they happen.
* After every exercise cell and every check cell the grader runs an ``attest`` cell with a fresh nonce: the hook
  compares the environment with the seal and answers one line, ``<prefix>:<nonce>:<ok|tampered>:<details>:<MAC>``,
  authenticated with the key. A missing, forged or ``tampered`` answer means the environment changed since the last
  good one; the grader charges the exercise whose cells ran in between (``tampered``, 0 points, for review) and
  grades the other exercises again in a fresh kernel without its solution.

Records are sticky: once tampered, every later answer says so. Modules first imported after the seal are added
to the record at the next attestation.
"""

from __future__ import annotations

import os
import sys

#: Environment variable naming the key file (the worker writes it; :func:`install` reads and deletes it).
KEY_ENV = "COURSE_GRADING_GUARD_KEY"
SEAL, ATTEST = "course_grading.seal", "course_grading.attest"
PREFIX = "course-grading-attest"
#: Audit events that change how other code runs; any of them after the seal is tampering.
EVENTS = frozenset({"sys.settrace", "sys.setprofile", "sys.addaudithook", "ctypes.dlopen", "ctypes.dlsym",
                    "ctypes.addressof", "ctypes.call_function", "ctypes.cdata", "ctypes.cdata/buffer",
                    "ctypes.string_at", "ctypes.PyObj_FromPtr", "ctypes.set_errno", "gc.get_objects",
                    "gc.get_referrers", "gc.get_referents", "_thread.start_new_thread", "sys.monitoring.use_tool_id",
                    "sys.monitoring.register_callback", "sys._current_frames", "cpython.PyInterpreterState_Clear"})


def sign(key: bytes, nonce: str, status: str, details: str) -> str:
    """The MAC of one answer (the grader checks it with the same key)."""
    import hmac

    return hmac.new(key, f"{nonce}\0{status}\0{details}".encode(), "sha256").hexdigest()


def install() -> None:
    """Read and delete the key, then install the hook. Runs in the grader's first cell, before any other code."""
    path = os.environ.get(KEY_ENV, "")
    with open(path, "rb") as f:
        key = f.read()
    os.unlink(path)
    if len(key) < 16:
        raise RuntimeError("the grading guard's key is missing")
    sys.addaudithook(_make_hook(key))


def _make_hook(key: bytes):  # noqa: C901 - one closure on purpose: nothing outside it can reach its state
    import _hashlib
    import atexit
    import builtins
    import threading
    import types

    hmac_digest = _hashlib.hmac_digest
    modules, getattr_, isinstance_, id_, type_, len_, list_, dict_, set_, str_ = \
        sys.modules, builtins.getattr, builtins.isinstance, builtins.id, builtins.type, builtins.len, \
        builtins.list, builtins.dict, builtins.set, builtins.str
    callable_, tuple_ = builtins.callable, builtins.tuple
    descriptors = (builtins.classmethod, builtins.staticmethod, builtins.property)
    ncallbacks, gettrace, getprofile = atexit._ncallbacks, sys.gettrace, sys.getprofile
    module_t, method_t, builtin_t = types.ModuleType, types.MethodType, types.BuiltinMethodType
    sys_module, threading_module = sys, threading
    state: dict = {"sealed": False, "busy": False, "violations": [], "record": {}, "seen": set_(),
                   "main": None}
    watched_sys = ("stdout", "stderr", "stdin", "displayhook", "excepthook", "breakpointhook", "unraisablehook",
                   "modules", "meta_path", "path_hooks", "audit", "addaudithook", "settrace", "setprofile")

    def ident(value: object) -> object:
        """What identifies a value: bound methods are made afresh at each access, so their parts count."""
        if isinstance_(value, (method_t, builtin_t)) and not isinstance_(getattr_(value, "__self__", None),
                                                                         module_t):
            return ("method", id_(getattr_(value, "__self__", None)), id_(getattr_(value, "__func__", value))
                    if isinstance_(value, method_t) else getattr_(value, "__name__", ""))
        if isinstance_(value, (list_, tuple)):
            return ("seq", tuple_(ident(v) for v in value))
        return id_(value)

    def watched(value: object) -> bool:
        return callable_(value) or isinstance_(value, module_t)

    def record_module(record: dict, name: str, module: object) -> None:
        namespace = getattr_(module, "__dict__", None)
        if not isinstance_(namespace, dict_) or name in ("__main__", "__mp_main__"):
            return
        record[("module", name)] = id_(module)
        for attr, value in list_(namespace.items()):
            if name == "sys" and attr not in watched_sys:
                continue
            if watched(value) or name == "sys":
                record[("attr", name, attr)] = ident(value)
            if isinstance_(value, type_) and value.__dict__.get("__module__") == name:
                for member, inner in list_(value.__dict__.items()):
                    if member not in ("__doc__", "__weakref__", "__dict__", "_abc_impl", "__parameters__") and (
                            callable_(inner) or isinstance_(inner, descriptors)):  # methods, not counters
                        record[("class", name, attr, member)] = ident(inner)

    def shell_record(record: dict) -> None:
        try:
            from IPython import get_ipython
        except ImportError:
            return
        shell = get_ipython()
        if shell is None:
            return
        record[("shell",)] = id_(shell)
        for attr in ("input_transformers_cleanup", "input_transformers_post", "ast_transformers",
                     "input_transformer_manager", "compile", "displayhook", "display_pub", "user_ns",
                     "user_global_ns", "custom_exceptions", "CustomTB", "kernel"):
            record[("shell", attr)] = ident(getattr_(shell, attr, None))
        manager = getattr_(shell, "input_transformer_manager", None)
        for attr in ("cleanup_transforms", "line_transforms", "token_transformers"):
            record[("shell", "manager", attr)] = ident(getattr_(manager, attr, None))
        for event, callbacks in dict_(getattr_(getattr_(shell, "events", None), "callbacks", {})).items():
            record[("shell", "events", event)] = ident(list_(callbacks))
        for owner, obj in (("shell", shell), ("kernel", getattr_(shell, "kernel", None))):
            for attr, value in list_(getattr_(obj, "__dict__", {}).items()):
                if watched(value) and not attr.startswith("_trait"):
                    record[(owner, "instance", attr)] = ident(value)
        kernel = getattr_(shell, "kernel", None)
        for attr, value in dict_(getattr_(kernel, "shell_handlers", {})).items():
            record[("kernel", "handler", attr)] = ident(value)

    def snapshot(names: set | None) -> dict:
        record: dict = {}
        for name, module in list_(modules.items()):
            if names is None or name in names:
                record_module(record, name, module)
        if names is None:
            shell_record(record)
            record[("sys", "path")] = tuple(sys_module.path)
            record[("sys", "trace")] = (ident(gettrace()), ident(getprofile()),
                                        ident(getattr_(threading_module, "_trace_hook", None)),
                                        ident(getattr_(threading_module, "_profile_hook", None)))
            record[("atexit",)] = ncallbacks()
            main = state["main"]
            if main is not None:
                for attr, value in list_(main.items()):
                    if attr in state["main_names"] and not attr.startswith("_") and watched(value):
                        record[("main", attr)] = ident(value)
        return record

    def describe(where: tuple) -> str:
        kind = where[0]
        if kind == "attr":
            return f"{where[1]}.{where[2]} was replaced"
        if kind == "class":
            return f"{where[1]}.{where[2]}.{where[3]} was replaced"
        if kind == "module":
            return f"sys.modules[{where[1]!r}] was replaced or removed"
        if kind == "main":
            return f"the shared name {where[1]!r} was rebound"
        if kind == "shell" and len_(where) > 1 and where[1] in ("input_transformers_cleanup",
                                                                  "input_transformers_post", "manager"):
            return "an IPython input transformer was added or changed"
        if kind in ("shell", "kernel"):
            return f"the IPython kernel was changed ({'.'.join(str_(w) for w in where[1:])})"
        if kind == "sys" and where[1] == "trace":
            return "a trace or profile function was installed"
        if kind == "sys":
            return "sys.path was changed"
        if kind == "atexit":
            return "an atexit function was registered"
        return " ".join(str_(w) for w in where)

    def compare() -> None:
        record, now = state["record"], snapshot(None)
        for where, value in record.items():
            if now.get(where, None) != value:
                state["violations"].append(describe(where))
        new = set_(modules) - state["seen"]  # imported since: recorded from now on
        record.update(snapshot(new))
        state["seen"] |= new

    def answer(nonce: str) -> None:
        compare()
        found = list_(dict_.fromkeys(state["violations"]))
        status = "tampered" if found else "ok"
        details = "; ".join(found[:4]).replace(":", " ").replace("\n", " ")[:600]
        mac = hmac_digest(key, f"{nonce}\0{status}\0{details}".encode(), "sha256").hex()
        out = sys_module.stdout
        out.write(f"\n{PREFIX}:{nonce}:{status}:{details}:{mac}\n")
        out.flush()

    def hook(event: str, args: tuple) -> None:
        if state["busy"]:
            return
        if event == ATTEST and state["sealed"]:
            state["busy"] = True
            try:
                answer(str_(args[0]) if args else "")
            finally:
                state["busy"] = False
        elif event == SEAL:
            if state["sealed"]:
                state["violations"].append("the checking environment was sealed again")
                return
            state["busy"] = True
            try:
                main = modules.get("__main__")
                state["main"] = getattr_(main, "__dict__", None)
                state["main_names"] = set_(state["main"] or ())
                state["record"], state["seen"] = snapshot(None), set_(modules)
                state["sealed"] = True
            finally:
                state["busy"] = False
        elif state["sealed"]:
            if event in EVENTS:
                state["violations"].append(f"{event} was used")
            elif event == "object.__setattr__" and len_(args) > 1 and args[1] == "__code__" \
                    and getattr_(args[0], "__module__", None) != "__main__":
                state["violations"].append(f"the code of {getattr_(args[0], '__qualname__', '?')} was replaced")

    return hook
