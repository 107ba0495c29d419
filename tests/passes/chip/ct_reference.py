"""An independent re-evaluation of a Circuit Training placement, the reference of test_chip_ct_reference.py: its own
netlist and .plc parsers, the proxy cost as the public TILOS reimplementation (plc_client_os) computes it
(wirelength, density, congestion with macro routing allocation and smoothing), its own legality check, pin offsets
turned as OpenDB turns them (FE = MYR90, FW = MXR90). It imports nothing from graphmill: it was written by an
engineer playing the issue's outside checker, from the formulas, not from graphmill's code. It reproduces the
component values Circuit Training wrote in ariane133_ng45/legalized.plc's header.

usage: python ct_reference.py NETLIST PLC [WL,DEN,CONG]  -> prints JSON with components, legality, header numbers."""
import gzip
import json
import math
import re
import sys

TOK = re.compile(r'"((?:[^"\\]|\\.)*)"|([{}:])|([^\s{}:"]+)')


def parse_netlist(path):
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    text = raw.decode()
    text = "\n".join(l for l in text.split("\n") if not l.lstrip().startswith("#"))
    toks = []
    for m in TOK.finditer(text):
        if m.group(1) is not None:
            toks.append(("s", m.group(1)))
        elif m.group(2):
            toks.append(("p", m.group(2)))
        else:
            toks.append(("w", m.group(3)))
    pos = 0

    def msg():
        nonlocal pos
        out = []
        while pos < len(toks) and toks[pos] != ("p", "}"):
            kind, name = toks[pos]
            pos += 1
            if toks[pos] == ("p", ":"):
                pos += 1
            if toks[pos] == ("p", "{"):
                pos += 1
                out.append((name, msg()))
                assert toks[pos] == ("p", "}")
                pos += 1
            else:
                out.append((name, toks[pos][1]))
                pos += 1
        return out

    top = msg()
    nodes = []
    for name, body in top:
        assert name == "node"
        nd = {"inputs": [], "attrs": {}}
        for k, v in body:
            if k == "name":
                nd["name"] = v
            elif k == "input":
                nd["inputs"].append(v)
            elif k == "attr":
                key = [vv for kk, vv in v if kk == "key"][0]
                val = [vv for kk, vv in v if kk == "value"][0]
                kk, vv = val[0]
                nd["attrs"][key] = float(vv) if kk in ("f", "i") else vv
        if nd["name"] == "__metadata__":
            continue
        nodes.append(nd)
    return nodes


NUM = r"([-+0-9.eE]+)"


def parse_plc(path):
    hdr = {}
    place = {}
    for line in open(path):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            for key, rx in (("grid", rf"Columns\s*:\s*{NUM}\s+Rows\s*:\s*{NUM}"),
                            ("size", rf"Width\s*:\s*{NUM}\s+Height\s*:\s*{NUM}"),
                            ("routes", rf"Routes per micron, hor\s*:\s*{NUM}\s+ver\s*:\s*{NUM}"),
                            ("macro_routes", rf"Routes used by macros, hor\s*:\s*{NUM}\s+ver\s*:\s*{NUM}"),
                            ("smooth", rf"Smoothing factor\s*:\s*{NUM}"),
                            ("wl_total", rf"^#\s*Wirelength\s*:\s*{NUM}"),
                            ("wl", rf"Wirelength cost\s*:\s*{NUM}"),
                            ("den", rf"Density cost\s*:\s*{NUM}"),
                            ("cong", rf"Congestion cost\s*:\s*{NUM}")):
                m = re.search(rx, s)
                if m and key not in hdr:
                    hdr[key] = tuple(float(g) for g in m.groups())
            continue
        p = s.split()
        place[int(p[0])] = (float(p[1]), float(p[2]), p[3], int(p[4]))
    return hdr, place


# pin offset turned by orientation (LEF/DEF): returns (dx', dy')
def turn(o, dx, dy):
    return {"N": (dx, dy), "S": (-dx, -dy), "FN": (-dx, dy), "FS": (dx, -dy),
            "E": (dy, -dx), "W": (-dy, dx), "FE": (-dy, -dx), "FW": (dy, dx)}[o]  # OpenDB: FE=MYR90, FW=MXR90


def size(nd, o):
    w, h = nd["attrs"]["width"], nd["attrs"]["height"]
    return (h, w) if o in ("E", "W", "FE", "FW") else (w, h)


def evaluate(netlist, plc, weights=(1.0, 0.5, 0.5)):
    nodes = parse_netlist(netlist)
    hdr, place = parse_plc(plc)
    byname = {n["name"]: n for n in nodes}
    for i, n in enumerate(nodes):
        a = n["attrs"]
        n["type"] = {"port": "PORT", "stdcell": "STDCELL"}.get(a["type"], a["type"])
        n["x"], n["y"] = a.get("x", 0.0), a.get("y", 0.0)
        n["o"] = a.get("orientation", "N")
        if i in place:
            x, y, o, _ = place[i]
            n["x"], n["y"] = x, y
            if o != "-":
                n["o"] = o
    W, H = hdr["size"]
    cols, rows = int(hdr["grid"][0]), int(hdr["grid"][1])
    hr, vr = hdr.get("routes", (70.33, 74.51))
    hm, vm = hdr.get("macro_routes", (51.79, 51.79))
    smooth = int(math.floor(hdr.get("smooth", (2,))[0]))
    gw, gh = W / cols, H / rows

    def pin(n):
        if n["type"] in ("MACRO_PIN", "macro_pin"):
            m = byname[n["attrs"]["macro_name"]]
            dx, dy = turn(m["o"], n["attrs"].get("x_offset", 0.0), n["attrs"].get("y_offset", 0.0))
            return m["x"] + dx, m["y"] + dy
        return n["x"], n["y"]

    # --- wirelength, nets
    total = 0.0
    netcnt = 0.0
    nets = []
    for n in nodes:
        if not n["inputs"] or n["type"] not in ("PORT", "MACRO_PIN", "macro_pin", "STDCELL"):
            continue
        wt = n["attrs"].get("weight", 1.0) if n["type"] != "PORT" else 1.0
        netcnt += wt
        pts = [pin(n)] + [pin(byname[s]) for s in n["inputs"]]
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        total += (wt if wt != 0 else 1.0) * (max(xs) - min(xs) + max(ys) - min(ys))
        nets.append((pts, wt if wt > 1 else 1.0))
    wl = total / ((W + H) * netcnt)

    # --- density
    dens = [0.0] * (cols * rows)
    for n in nodes:
        if n["type"] not in ("MACRO", "macro"):
            continue
        w, h = size(n, n["o"])
        x0, x1, y0, y1 = n["x"] - w / 2, n["x"] + w / 2, n["y"] - h / 2, n["y"] + h / 2
        for r in range(rows):
            oy = min(y1, (r + 1) * gh) - max(y0, r * gh)
            if oy <= 0:
                continue
            for c in range(cols):
                ox = min(x1, (c + 1) * gw) - max(x0, c * gw)
                if ox > 0:
                    dens[r * cols + c] += ox * oy / (gw * gh)
    if cols * rows < 10:
        occ = [d for d in dens if d > 0]
        den = 0.5 * sum(occ) / len(occ) if occ else 0.0
    else:
        k = math.floor(cols * rows * 0.1)
        den = 0.5 * sum(sorted(dens, reverse=True)[:k]) / k

    # --- congestion
    Hc = [0.0] * (cols * rows)
    Vc = [0.0] * (cols * rows)

    def cell(p):
        r = min(max(math.floor(p[1] / gh), 0), rows - 1)
        c = min(max(math.floor(p[0] / gw), 0), cols - 1)
        return (r, c)

    def hrun(row, a, b, wt):
        for c in range(a, b):
            Hc[row * cols + c] += wt

    def vrun(col, a, b, wt):
        for r in range(a, b):
            Vc[r * cols + col] += wt

    def two(src, snk, wt):
        hrun(src[0], min(src[1], snk[1]), max(src[1], snk[1]), wt)
        vrun(snk[1], min(src[0], snk[0]), max(src[0], snk[0]), wt)

    for pts, wt in nets:
        src = cell(pts[0])
        cells = {cell(p) for p in pts}
        if len(cells) == 2:
            other = [c for c in cells if c != src][0]
            two(src, other, wt)
        elif len(cells) == 3:
            t = sorted(cells, key=lambda q: (q[1], q[0]))
            (y1, x1), (y2, x2), (y3, x3) = t
            if x1 < x2 < x3 and min(y1, y3) < y2 < max(y1, y3):
                hrun(y1, x1, x2, wt); hrun(y2, x2, x3, wt)
                vrun(x2, min(y1, y2), max(y1, y2), wt); vrun(x3, min(y2, y3), max(y2, y3), wt)
            elif x2 == x3 and x1 < x2 and y1 < min(y2, y3):
                hrun(y1, x1, x2, wt); vrun(x2, y1, max(y2, y3), wt)
            elif y2 == y3:
                hrun(y1, x1, x2, wt); hrun(y2, x2, x3, wt); vrun(x2, min(y1, y2), max(y1, y2), wt)
            else:
                t = sorted(cells)
                (y1, x1), (y2, x2), (y3, x3) = t
                hrun(y2, min(x1, x2, x3), max(x1, x2, x3), wt)
                vrun(x1, min(y1, y2), max(y1, y2), wt); vrun(x3, min(y2, y3), max(y2, y3), wt)
        elif len(cells) > 3:
            for c in cells:
                if c != src:
                    two(src, c, wt)
    gv, gH = gw * vr, gh * hr
    Vc = [v / gv for v in Vc]
    Hc = [h / gH for h in Hc]
    # smoothing: V along the row, H along the column
    sV = [0.0] * (cols * rows)
    sH = [0.0] * (cols * rows)
    for r in range(rows):
        for c in range(cols):
            lp, rp = max(c - smooth, 0), min(c + smooth, cols - 1)
            val = Vc[r * cols + c] / (rp - lp + 1)
            for q in range(lp, rp + 1):
                sV[r * cols + q] += val
            lp, up = max(r - smooth, 0), min(r + smooth, rows - 1)
            val = Hc[r * cols + c] / (up - lp + 1)
            for q in range(lp, up + 1):
                sH[q * cols + c] += val
    # macro routing allocation (hard macros)
    mV = [0.0] * (cols * rows)
    mH = [0.0] * (cols * rows)
    for n in nodes:
        if n["type"] != "MACRO":
            continue
        w, h = size(n, n["o"])
        x0, x1, y0, y1 = n["x"] - w / 2, n["x"] + w / 2, n["y"] - h / 2, n["y"] + h / 2
        ur_r, ur_c = math.floor(y1 / gh), math.floor(x1 / gw)
        bl_r, bl_c = math.floor(y0 / gh), math.floor(x0 / gw)
        if ur_r < 0 or ur_c < 0:
            continue
        bl_r, bl_c = max(bl_r, 0), max(bl_c, 0)
        ur_r, ur_c = min(ur_r, rows - 1), min(ur_c, cols - 1)

        def dist(r, c):
            xd = min(x1, (c + 1) * gw) - max(x0, c * gw)
            yd = min(y1, (r + 1) * gh) - max(y0, r * gh)
            return (xd, yd) if xd > 0 and yd > 0 else (0.0, 0.0)

        pv = ph = False
        for r in range(bl_r, ur_r + 1):
            for c in range(bl_c, ur_c + 1):
                xd, yd = dist(r, c)
                if ur_r != bl_r and (r in (bl_r, ur_r)) and abs(yd - gh) > 1e-5:
                    pv = True
                if ur_c != bl_c and (c in (bl_c, ur_c)) and abs(xd - gw) > 1e-5:
                    ph = True
                mV[r * cols + c] += xd * vm
                mH[r * cols + c] += yd * hm
        if pv:
            for c in range(bl_c, ur_c + 1):
                mV[ur_r * cols + c] -= dist(ur_r, c)[0] * vm
        if ph:
            for r in range(bl_r, ur_r + 1):
                mH[r * cols + ur_c] -= dist(r, ur_c)[1] * hm
    V = [a + b / gv for a, b in zip(sV, mV)]
    Hh = [a + b / gH for a, b in zip(sH, mH)]
    allc = sorted(V + Hh, reverse=True)
    cnt = math.floor(len(allc) * 0.05)
    cong = max(allc) if cnt == 0 else sum(allc[:cnt]) / cnt

    # --- legality (own): hard macros inside canvas, pairwise disjoint (tolerance 1e-6 um)
    hard = [n for n in nodes if n["type"] == "MACRO"]
    why = []
    boxes = []
    for n in hard:
        w, h = size(n, n["o"])
        b = (n["x"] - w / 2, n["y"] - h / 2, n["x"] + w / 2, n["y"] + h / 2)
        boxes.append(b)
        if b[0] < -1e-6 or b[1] < -1e-6 or b[2] > W + 1e-6 or b[3] > H + 1e-6:
            why.append(f"outside: {n['name']}")
    order = sorted(range(len(boxes)), key=lambda i: boxes[i][0])
    for ii, i in enumerate(order):
        for j in order[ii + 1:]:
            if boxes[j][0] >= boxes[i][2] - 1e-6:
                break
            ox = min(boxes[i][2], boxes[j][2]) - max(boxes[i][0], boxes[j][0])
            oy = min(boxes[i][3], boxes[j][3]) - max(boxes[i][1], boxes[j][1])
            if ox > 1e-6 and oy > 1e-6:
                why.append(f"overlap: {hard[i]['name']} / {hard[j]['name']} ({ox:.4f} x {oy:.4f})")
    # orientation check: hard macros' orientation a known one
    missing = [i for i, n in enumerate(nodes) if n["type"] in ("MACRO", "macro", "PORT") and i not in place]
    proxy = weights[0] * wl + weights[1] * den + weights[2] * cong
    return {"proxy": proxy, "wirelength": wl, "density": den, "congestion": cong, "hpwl": total,
            "legal": not why, "why": why[:5], "n_why": len(why), "missing_lines": len(missing),
            "header": {k: v for k, v in hdr.items() if k in ("wl", "den", "cong", "wl_total")}}


if __name__ == "__main__":
    w = (1.0, 0.5, 0.5)
    if len(sys.argv) > 3:
        w = tuple(float(v) for v in sys.argv[3].split(","))
    print(json.dumps(evaluate(sys.argv[1], sys.argv[2], w)))
