"""report_code — the measured source code, as the report reads it: the files
at the results' git revision, lines of code and complexity per file, where a
function is defined, and excerpts.

Contract: code_at_revision(folder, env) gives a flat directory of the
sources the sweep measured (`git show REV:path` into a temporary directory
removed at exit; else a legacy code/ copy in the results folder; else
nothing, with a warning).  The other functions are pure: they read the
files or strings they are given and return values; nothing is printed.

  where code lives   WAIT_LAYER (the files a model waits through),
                     CODE_PATH (a flat name -> its path in the repository),
                     ERROR_ANCHOR (where each model's retry is written),
                     CODE_FILES (each file's paths, newest layout first)
  finding code       c_def_line (a C function's line), py_def (a Python
                     function by name or by the idiom it uses), excerpt_at
  counting code      code_stats, code_stats_files: lines of code,
                     functions, decision points, locks and atomics,
                     callbacks (comments and strings blanked first)
"""
import atexit
import os
import re
import shutil
import subprocess
import tempfile

from report_data import ROOT, VARIANTS, warn


def c_def_line(src, name):
    """Line of the definition of C function name in src, or None."""
    if not src:
        return None
    pat = re.compile(r"^[A-Za-z_][\w \t\*]*\b" + re.escape(name) + r"\s*\(")
    for i, line in enumerate(src.split("\n"), 1):
        if pat.match(line) and not line.rstrip().endswith(";"):
            return i
    return None


def py_def(src, names, idiom):
    """(function, line) in Python src: the first of names defined there, else
    the function around the first match of idiom; None if neither."""
    if not src:
        return None
    lines = src.split("\n")
    for name in names:
        for i, line in enumerate(lines, 1):
            if re.match(r"\s*(async\s+)?def " + re.escape(name) + r"\s*\(", line):
                return name, i
    for i, line in enumerate(lines):
        if re.search(idiom, line) and not line.lstrip().startswith("#"):
            for j in range(i, -1, -1):
                m = re.match(r"\s*(?:async\s+)?def (\w+)\s*\(", lines[j])
                if m:
                    return m.group(1), j + 1
            return "(module level)", i + 1
    return None


# The layer each model waits through (saved flat in code/), where each file
# lives in the repository, and where each model's retry is written.
WAIT_LAYER = {"sync": ["blocking_mailer.c", "smtp_blocking.c"],
              "threads": ["blocking_mailer.c", "smtp_blocking.c"],
              "async": ["async_mailer.c", "smtp_session.c"],
              "hybrid": ["async_mailer.c", "smtp_session.c"],
              # async ×N: the async model's files and the driver of its reactors
              **{v: ["async.c", "async_reactors.c", "async_mailer.c", "smtp_session.c"] for v in VARIANTS}}
CODE_PATH = {"blocking_mailer.c": "models/mailer/blocking_mailer.c", "smtp_blocking.c": "lib/smtp_blocking.c",
             "async_mailer.c": "models/mailer/async_mailer.c", "smtp_session.c": "lib/smtp_session.c",
             "async_reactors.c": "models/mailer/async_reactors.c"}
ERROR_ANCHOR = {"sync": ("blocking_mailer.c", r"for \(int attempt"),
                "threads": ("blocking_mailer.c", r"for \(int attempt"),
                "async": ("async_mailer.c", r"^static struct defer(?:red)?_result maybe_retry"),
                "hybrid": ("async_mailer.c", r"^static struct defer(?:red)?_result maybe_retry"),
                **{v: ("async_mailer.c", r"^static struct defer(?:red)?_result maybe_retry") for v in VARIANTS}}


# Where each measured source file lived, newest layout first (the mailers
# moved from lib/ to models/mailer/): read at the revision the sweep ran.
CODE_FILES = {
    "async_mailer.c": ["models/mailer/async_mailer.c", "lib/async_mailer.c"],
    "blocking_mailer.c": ["models/mailer/blocking_mailer.c", "lib/blocking_mailer.c"],
    "smtp_session.c": ["lib/smtp_session.c"],
    "async_reactors.c": ["models/mailer/async_reactors.c"],
    "smtp_blocking.c": ["lib/smtp_blocking.c"],
    "threadpool.c": ["lib/threadpool.c"],
    "twisted_summary.py": ["models/reference/twisted_summary.py"],
}


def code_at_revision(folder, env):
    """(directory, description) of the sources the results were measured
    with, flat as the sections read them: the files at env's git revision
    (`git show REV:path`) when this repository has it; else a legacy code/
    copy in the folder (old results, test fixtures); else nothing."""
    rev = env.get("git_rev") or ""
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True)
    if rev and git("cat-file", "-e", rev + "^{commit}").returncode == 0:
        tmp = tempfile.mkdtemp(prefix="mailbench-code-")
        atexit.register(shutil.rmtree, tmp, True)
        names = git("ls-tree", "--name-only", rev, "models/").stdout.decode().split()
        wanted = {os.path.basename(n): [n] for n in names if n.endswith(".c")}
        wanted.update(CODE_FILES)
        for flat, paths in wanted.items():
            for path in paths:
                out = git("show", f"{rev}:{path}")
                if out.returncode == 0:
                    with open(os.path.join(tmp, flat), "wb") as f:
                        f.write(out.stdout)
                    break
        dirty = " (the sweep ran with uncommitted changes, not included)" if env.get("git_dirty") else ""
        return tmp, f"the sources at the measured revision `{rev[:12]}`{dirty}"
    legacy = os.path.join(folder, "code")
    if os.path.isdir(legacy):
        return legacy, "the sources saved with these results (`code/`)"
    warn(f"the measured revision {rev or '(none)'} is not in this repository and the folder has "
         "no code/: section 8 and the code mapping are left out")
    return os.path.join(folder, "code"), "no sources"


def excerpt_at(path, anchor, before=0, after=14):
    """(line number, text) of the lines from the first match of anchor on."""
    with open(path, errors="replace") as f:
        lines = f.read().split("\n")
    for i, l in enumerate(lines):
        if re.search(anchor, l):
            lo = max(0, i - before)
            return lo + 1, "\n".join(lines[lo:i + after]).rstrip()
    return 0, ""



def code_stats_files(paths):
    """code_stats over several files, summed (the worst function overall)."""
    parts = [code_stats(p) for p in paths]
    out = dict(loc=0, functions=0, decisions=0, locks=0, callbacks=0, worst=("—", 0))
    for st in parts:
        for k in ("loc", "functions", "decisions", "locks", "callbacks"):
            out[k] += st[k]
        if st["worst"][1] > out["worst"][1]:
            out["worst"] = st["worst"]
    return out


def code_stats(path):
    """Lines of code, functions, decision points, locks, callbacks, an excerpt."""
    with open(path, errors="replace") as f:
        src = f.read()
    lines = src.split("\n")
    clean = strip_comments(src)
    clines = clean.split("\n")
    loc = sum(1 for l in clines if l.strip())
    dec_re = re.compile(r"\b(if|for|while|case)\b|&&|\|\||\?")
    func_re = re.compile(r"^[A-Za-z_][\w \t\*]*?\b(\w+)\s*\([^;]*$")
    funcs, current, worst = [], None, ("—", 0)
    counts = {}
    for i, l in enumerate(clines):
        m = func_re.match(l)
        nxt = clines[i + 1].strip() if i + 1 < len(clines) else ""
        if m and not l.startswith(("static const", "typedef")) and (l.rstrip().endswith("{") or nxt.startswith("{")
                                                                     or l.rstrip().endswith(")")):
            current = m.group(1)
            funcs.append(current)
            counts[current] = 1
        if current:
            counts[current] += len(dec_re.findall(l))
    for fn, c in counts.items():
        if c > worst[1]:
            worst = (f"`{fn}`", c)
    decisions = len(dec_re.findall(clean))
    locks = len(re.findall(r"\bpthread_(mutex|cond|spin|rwlock)_\w+\s*\(|\batomic_\w+\s*\(", clean))
    callbacks = len(set(re.findall(r"\b(\w+_cb)\b", clean))
                    | set(re.findall(r"^(?:static\s+)?struct defer(?:red)?_result\s+(\w+)\s*\(\s*struct defer(?:red)?_result",
                                     clean, re.M)))
    # The first line inside a function that handles a failure: errbacks,
    # traps and retries first, plain failure counting as a fallback.
    inside = function_lines(clines, func_re)
    excerpt = (0, "")
    for pattern in (r"errback|\btrap|retry|retries|tempfail", r"fail|error"):
        hit = next((i for i in inside if re.search(pattern, clines[i], re.I)), None)
        if hit is not None:
            lo, hi = max(0, hit - 2), min(len(lines), hit + 8)
            excerpt = (lo + 1, "\n".join(lines[lo:hi]).rstrip())
            break
    return dict(loc=loc, functions=len(funcs), decisions=decisions, worst=worst, locks=locks,
                callbacks=callbacks, excerpt=excerpt)


def function_lines(clines, func_re):
    """Indexes of the lines inside function bodies (brace depth > 0)."""
    depth, out = 0, []
    for i, l in enumerate(clines):
        if depth > 0:
            out.append(i)
        depth += l.count("{") - l.count("}")
        depth = max(depth, 0)
    return out


def strip_comments(src):
    """C source with comments and string literals blanked, lines kept."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and src[j] != c and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            out.append(c + " " * (min(j, n) - i - 1) + (c if j < n else ""))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)
