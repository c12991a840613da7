"""Numba kernels of FastHash's fast engine: histogram trees, exact max-flow block inference, pair sums.

Each kernel performs the same floating-point operations in the same order as the reference path in
``methods/fasthash.py`` (scikit-learn's ``TreeGrower``, PyMaxflow, NumPy), so the fitted model is
identical; ``tests/methods/test_fasthash.py`` checks that. Imported lazily (only when numba exists).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# ============================================================================================ trees
# Node arrays are indexed by heap position (root 0, children 2s+1 / 2s+2). Per-node scalars:
#   nint[s]: 0 lo, 1 hi (partition range), 2 state (0 absent, 1 leaf, 2 splittable, 3 split),
#            3 hist mode (0 none, 1 direct, 2 parent - sibling, 3 root), 4 sibling slot,
#            5 best feature position, 6 best bin, 7 n_samples, 8 depth, 9 evaluated (split searched)
#   nflt[s]: 0 sum_gradients, 1 sum_hessians, 2 value, 3 gain, 4 sum_gradient_left, 5 sum_hessian_left
N_INT, N_FLT = 10, 6


@intrinsic
def _add_gh(typingctx, rows, index, g, h):
    """rows[index, 0] += g; rows[index, 1] += h for a C-contiguous float64 (bins, 2) array, as one
    two-lane vector add (each lane is the same IEEE addition as scalar code)."""
    if not (isinstance(rows, types.Array) and rows.dtype == types.float64 and rows.ndim == 2 and rows.layout == "C"):
        return None

    def codegen(context, builder, sig, args):
        array, position, g_value, h_value = args
        data = context.make_array(sig.args[0])(context, builder, array).data
        i64, i32 = ir.IntType(64), ir.IntType(32)
        offset = builder.zext(position, i64) if position.type.width < 64 else position
        pointer = builder.gep(data, [builder.mul(offset, ir.Constant(i64, 2))])
        pair = ir.VectorType(ir.DoubleType(), 2)
        vector_pointer = builder.bitcast(pointer, pair.as_pointer())
        update = builder.insert_element(ir.Constant(pair, None), g_value, ir.Constant(i32, 0))
        update = builder.insert_element(update, h_value, ir.Constant(i32, 1))
        builder.store(builder.fadd(builder.load(vector_pointer, align=8), update), vector_pointer, align=8)
        return context.get_dummy_value()

    return types.void(rows, index, types.float64, types.float64), codegen


@njit(nogil=True, cache=True)
def compute_node_value(sum_gradient, sum_hessian, l2):
    # scikit-learn splitting.pyx compute_node_value, bounds -inf/+inf (no monotonic constraints)
    return -sum_gradient / (sum_hessian + l2 + 1e-15)


@njit(nogil=True, cache=True)
def _histograms(XF, feat, k0, k1, part, lo, hi, values, hist_s, cnt_s, count, n_bins):
    """Per feature position k in k0..k1-1 and bin: hist_s[k, bin] += (gradient, hessian) and, when
    ``count``, cnt_s[k, bin] += 1, over partition positions p = lo..hi-1 in order (sample part[p];
    part is None for the root: sample p). Every bin's sums run in sample order, as in scikit-learn;
    four features share a pass so that their add chains overlap (class-sorted data put consecutive
    samples in the same bin, which serialises a one-feature loop). 16 bytes per bin keep four
    features' histograms in the L1 cache. Only the n_bins[k] bins that feature k's ids can take are
    cleared (the others stay unused)."""
    k = k0
    while k < k1:
        width = min(4, k1 - k)
        for j in range(width):
            hist_s[k + j, :n_bins[k + j], :] = 0.0
            if count:
                cnt_s[k + j, :n_bins[k + j]] = 0
        if width == 4:
            c0 = XF[:, feat[k]]
            c1 = XF[:, feat[k + 1]]
            c2 = XF[:, feat[k + 2]]
            c3 = XF[:, feat[k + 3]]
            h0 = hist_s[k]
            h1 = hist_s[k + 1]
            h2 = hist_s[k + 2]
            h3 = hist_s[k + 3]
            n0 = cnt_s[k]
            n1 = cnt_s[k + 1]
            n2 = cnt_s[k + 2]
            n3 = cnt_s[k + 3]
            for p in range(lo, hi):
                i = p if part is None else part[p]
                g = np.float64(values[p, 0])
                h = np.float64(values[p, 1])
                b0 = c0[i]
                b1 = c1[i]
                b2 = c2[i]
                b3 = c3[i]
                _add_gh(h0, b0, g, h)
                _add_gh(h1, b1, g, h)
                _add_gh(h2, b2, g, h)
                _add_gh(h3, b3, g, h)
                if count:
                    n0[b0] += 1
                    n1[b1] += 1
                    n2[b2] += 1
                    n3[b3] += 1
        else:
            for j in range(width):
                column = XF[:, feat[k + j]]
                hj = hist_s[k + j]
                nj = cnt_s[k + j]
                for p in range(lo, hi):
                    i = p if part is None else part[p]
                    b = column[i]
                    _add_gh(hj, b, np.float64(values[p, 0]), np.float64(values[p, 1]))
                    if count:
                        nj[b] += 1
        k += width


@njit(nogil=True, cache=True)
def root_histograms(XF, feat, k0, k1, gh, hist, cnt, root_cnt, n_bins):
    """Histograms of the root (every sample, index order) for feature positions k0..k1-1; the
    counts are the same for every tree (``root_cnt``). All 256 bins of the first feature are
    cleared: its histogram gives the root's totals (NumPy's sum over the 256 bins, as scikit-learn)."""
    if k0 == 0:
        hist[0, 0, :, :] = 0.0
    _histograms(XF, feat, k0, k1, None, 0, XF.shape[0], gh, hist[0], cnt[0], False, n_bins)
    for k in range(k0, k1):
        cnt[0, k, :n_bins[k]] = root_cnt[feat[k], :n_bins[k]]


@njit(nogil=True, cache=True)
def level_work(XF, feat, k0, k1, level, part, ordered_gh, nint, nflt, hist, cnt, nbins_nm,
               min_samples_leaf, min_hessian, l2, best_out_i, best_out_f):
    """Histograms (direct, then by subtraction) and the best split per node of one tree level,
    for feature positions k0..k1-1; results per node into best_out_* (one row per caller)."""
    first_slot = (1 << level) - 1
    last_slot = (1 << (level + 1)) - 1
    # 1. direct histograms (the smaller child of each split: sample order = partition order); four
    #    features at a time for every such node, so that their columns are read into the cache once
    for g0 in range(k0, k1, 4):
        g1 = min(g0 + 4, k1)
        for s in range(first_slot, last_slot):
            if nint[s, 3] == 1:
                _histograms(XF, feat, g0, g1, part, nint[s, 0], nint[s, 1], ordered_gh, hist[s], cnt[s], True, nbins_nm)
    # 2. the larger child: parent minus sibling (scikit-learn _subtract_histograms)
    for s in range(first_slot, last_slot):
        if nint[s, 3] != 2:
            continue
        parent = (s - 1) // 2
        sib = nint[s, 4]
        for k in range(k0, k1):
            for b in range(nbins_nm[k]):
                hist[s, k, b, 0] = hist[parent, k, b, 0] - hist[sib, k, b, 0]
                hist[s, k, b, 1] = hist[parent, k, b, 1] - hist[sib, k, b, 1]
                cnt[s, k, b] = cnt[parent, k, b] - cnt[sib, k, b]
    # 3. best split per splittable node (scikit-learn _find_best_bin_to_split_left_to_right,
    #    no missing values; features in order, strict '>' keeps the first best)
    for s in range(first_slot, last_slot):
        best_out_f[s, 0] = -1.0
        best_out_i[s, 0] = -1
        if nint[s, 2] != 2:
            continue
        n_samples = nint[s, 7]
        sum_gradients = nflt[s, 0]
        sum_hessians = nflt[s, 1]
        loss_current_node = sum_gradients * nflt[s, 2]
        best_gain = -1.0
        for k in range(k0, k1):
            end = np.int64(nbins_nm[k]) - 1
            sum_gradient_left = 0.0
            sum_hessian_left = 0.0
            n_left = 0
            f_gain = -1.0
            f_found = False
            f_bin = 0
            f_gl = 0.0
            f_hl = 0.0
            f_nl = 0
            for b in range(end):
                n_left += np.int64(cnt[s, k, b])
                n_right = n_samples - n_left
                sum_hessian_left += hist[s, k, b, 1]
                sum_hessian_right = sum_hessians - sum_hessian_left
                sum_gradient_left += hist[s, k, b, 0]
                sum_gradient_right = sum_gradients - sum_gradient_left
                if n_left < min_samples_leaf:
                    continue
                if n_right < min_samples_leaf:
                    break
                if sum_hessian_left < min_hessian:
                    continue
                if sum_hessian_right < min_hessian:
                    break
                value_left = compute_node_value(sum_gradient_left, sum_hessian_left, l2)
                value_right = compute_node_value(sum_gradient_right, sum_hessian_right, l2)
                gain = loss_current_node
                gain -= sum_gradient_left * value_left
                gain -= sum_gradient_right * value_right
                if gain > f_gain and gain > 0.0:  # min_gain_to_split = 0
                    f_found = True
                    f_gain = gain
                    f_bin = b
                    f_gl = sum_gradient_left
                    f_hl = sum_hessian_left
                    f_nl = n_left
            if f_found and f_gain > best_gain:
                best_gain = f_gain
                best_out_f[s, 0] = f_gain
                best_out_f[s, 1] = f_gl
                best_out_f[s, 2] = f_hl
                best_out_i[s, 0] = k
                best_out_i[s, 1] = f_bin
                best_out_i[s, 2] = f_nl


@njit(nogil=True, cache=True)
def apply_level(XF, feat, level, max_depth, part, buffer, gh, ordered_gh, nint, nflt,
                best_i, best_f, min_samples_leaf, l2):
    """Choose each node's split (first best over the callers' feature chunks), partition its
    samples stably, and set up the children (leaf or splittable, histogram mode). Returns the
    number of nodes that need a split search at the next level."""
    first_slot = (1 << level) - 1
    last_slot = (1 << (level + 1)) - 1
    n_next = 0
    for s in range(first_slot, last_slot):
        if nint[s, 2] != 2:
            continue
        nint[s, 9] = 1
        chosen = -1
        gain = -1.0
        for c in range(best_i.shape[0]):
            if best_i[c, s, 0] >= 0 and best_f[c, s, 0] > gain:
                gain = best_f[c, s, 0]
                chosen = c
        if chosen < 0 or gain <= 0.0:
            nint[s, 2] = 1  # no valid split: a leaf
            continue
        k = best_i[chosen, s, 0]
        threshold = best_i[chosen, s, 1]
        nint[s, 2] = 3
        nint[s, 5] = k
        nint[s, 6] = threshold
        nflt[s, 3] = gain
        sum_gradient_left = best_f[chosen, s, 1]
        sum_hessian_left = best_f[chosen, s, 2]
        sum_gradient_right = nflt[s, 0] - sum_gradient_left
        sum_hessian_right = nflt[s, 1] - sum_hessian_left
        nflt[s, 4] = sum_gradient_left
        nflt[s, 5] = sum_hessian_left
        # stable partition (scikit-learn's split_indices keeps the order inside each side)
        f = feat[k]
        lo, hi = nint[s, 0], nint[s, 1]
        n_left = 0
        n_right = 0
        for p in range(lo, hi):
            i = part[p]
            if XF[i, f] <= threshold:
                part[lo + n_left] = i
                n_left += 1
            else:
                buffer[n_right] = i
                n_right += 1
        for q in range(n_right):
            part[lo + n_left + q] = buffer[q]
        left, right = 2 * s + 1, 2 * s + 2
        depth = nint[s, 8] + 1
        for child, c_lo, c_hi, c_g, c_h in ((left, lo, lo + n_left, sum_gradient_left, sum_hessian_left),
                                            (right, lo + n_left, hi, sum_gradient_right, sum_hessian_right)):
            nint[child, 0] = c_lo
            nint[child, 1] = c_hi
            nint[child, 7] = c_hi - c_lo
            nint[child, 8] = depth
            nint[child, 3] = 0
            nint[child, 9] = 0
            nflt[child, 0] = c_g
            nflt[child, 1] = c_h
            nflt[child, 2] = compute_node_value(c_g, c_h, l2)
            nflt[child, 3] = -1.0
            if depth == max_depth or c_hi - c_lo < 2 * min_samples_leaf:
                nint[child, 2] = 1
            else:
                nint[child, 2] = 2
                n_next += 1
        if nint[left, 2] == 2 or nint[right, 2] == 2:
            # brute histogram for the smaller child (right on ties), subtraction for the other
            small, large = (left, right) if n_left < n_right else (right, left)
            nint[small, 3] = 1
            for p in range(nint[small, 0], nint[small, 1]):
                ordered_gh[p, 0] = gh[part[p], 0]
                ordered_gh[p, 1] = gh[part[p], 1]
            if nint[large, 2] == 2:
                nint[large, 3] = 2
                nint[large, 4] = small
    return n_next


@njit(nogil=True, cache=True)
def grow_levels(XF, feat, max_depth, part, buffer, gh, ordered_gh, nint, nflt, hist, cnt, nbins_nm,
                min_samples_leaf, min_hessian, l2, best_i, best_f):
    """One thread's whole tree after the root histograms: level_work and apply_level per level."""
    n_split = 1 if nint[0, 2] == 2 else 0
    for level in range(max_depth):
        if n_split == 0:
            break
        level_work(XF, feat, 0, feat.size, level, part, ordered_gh, nint, nflt, hist, cnt, nbins_nm,
                   min_samples_leaf, min_hessian, l2, best_i[0], best_f[0])
        n_split = apply_level(XF, feat, level, max_depth, part, buffer, gh, ordered_gh, nint, nflt, best_i, best_f,
                              min_samples_leaf, l2)


@njit(nogil=True, cache=True)
def finish_tree(nint, nflt, part, shrinkage, decision, feat, thresholds_padded, out):
    """Leaf values times shrinkage added to the training decision values; the predictor nodes in
    scikit-learn's pre-order (``_fill_predictor_arrays``) as columns of ``out`` (float64):
    0 value, 1 count, 2 feature_idx, 3 num_threshold, 4 missing_go_to_left, 5 left, 6 right,
    7 gain, 8 depth, 9 is_leaf, 10 bin_threshold. Returns the number of nodes."""
    n_slots = nint.shape[0]
    stack = np.empty(n_slots, np.int64)
    top = 0
    stack[0] = 0
    index_of = np.full(n_slots, -1, np.int64)
    n_nodes = 0
    while top >= 0:
        s = stack[top]
        top -= 1
        index_of[s] = n_nodes
        row = n_nodes
        n_nodes += 1
        out[row, 1] = nint[s, 7]
        out[row, 8] = nint[s, 8]
        if nint[s, 2] == 3:
            k = nint[s, 5]
            out[row, 0] = nflt[s, 2]
            out[row, 2] = feat[k]
            out[row, 3] = thresholds_padded[feat[k], nint[s, 6]]
            out[row, 4] = 1.0 if nint[2 * s + 1, 7] > nint[2 * s + 2, 7] else 0.0
            out[row, 7] = nflt[s, 3]
            out[row, 9] = 0.0
            out[row, 10] = nint[s, 6]
            top += 1
            stack[top] = 2 * s + 2
            top += 1
            stack[top] = 2 * s + 1
        else:
            value = nflt[s, 2] * shrinkage
            out[row, 0] = value
            out[row, 2] = 0.0
            out[row, 3] = 0.0
            out[row, 4] = 0.0
            out[row, 7] = -1.0
            out[row, 9] = 1.0
            out[row, 10] = 0.0
            for p in range(nint[s, 0], nint[s, 1]):
                decision[part[p]] += value
    # children indices (pre-order: left child follows its parent)
    for s in range(n_slots):
        if index_of[s] >= 0 and nint[s, 2] == 3:
            out[index_of[s], 5] = index_of[2 * s + 1]
            out[index_of[s], 6] = index_of[2 * s + 2]
        elif index_of[s] >= 0:
            out[index_of[s], 5] = 0.0
            out[index_of[s], 6] = 0.0
    return n_nodes


@njit(nogil=True, cache=True)
def predict_trees(X, row0, row1, feature, threshold, left, jump, value, roots, tree_depth, bit_off, base, out):
    """Decision values of several boosted bits, rows row0..row1-1: out[i, b] = base[b] plus, tree by
    tree in order, the value of the leaf that row i reaches (scikit-learn's ``predict_binned`` on
    bin ids: left when id <= threshold; no missing values). The trees' nodes are stacked: the left
    child is ``left[node]``, the right one ``left[node] + jump[node]``, and a leaf is its own child
    (jump 0), so a row takes exactly ``tree_depth[t]`` branch-free steps. X row-major; rows in
    tiles of 256 (in the cache while one bit's trees, also in the cache, run over them)."""
    for t0 in range(row0, row1, 256):
        t1 = min(t0 + 256, row1)
        for b in range(base.size):
            for i in range(t0, t1):
                acc = base[b]
                t = bit_off[b]
                while t + 4 <= bit_off[b + 1]:  # four trees in lockstep: independent load chains
                    n0, n1, n2, n3 = roots[t], roots[t + 1], roots[t + 2], roots[t + 3]
                    for _ in range(max(tree_depth[t], tree_depth[t + 1], tree_depth[t + 2], tree_depth[t + 3])):
                        n0 = left[n0] + jump[n0] * np.int64(X[i, feature[n0]] > threshold[n0])
                        n1 = left[n1] + jump[n1] * np.int64(X[i, feature[n1]] > threshold[n1])
                        n2 = left[n2] + jump[n2] * np.int64(X[i, feature[n2]] > threshold[n2])
                        n3 = left[n3] + jump[n3] * np.int64(X[i, feature[n3]] > threshold[n3])
                    acc += value[n0]  # tree order, as the reference's sum
                    acc += value[n1]
                    acc += value[n2]
                    acc += value[n3]
                    t += 4
                while t < bit_off[b + 1]:
                    node = roots[t]
                    for _ in range(tree_depth[t]):
                        node = left[node] + jump[node] * np.int64(X[i, feature[node]] > threshold[node])
                    acc += value[node]
                    t += 1
                out[i, b] = acc


@njit(nogil=True, cache=True)
def root_counts(XF):
    counts = np.zeros((XF.shape[1], 256), np.uint32)
    for f in range(XF.shape[1]):
        for i in range(XF.shape[0]):
            counts[f, XF[i, f]] += 1
    return counts


# ======================================================================================= inference
@njit(nogil=True, cache=True)
def build_block_graphs(n_blocks, member_off, within_off, within_a, within_b):
    """Static residual-graph layout of every block: nodes 0..m-1, source m, sink m+1; arcs of a
    node are contiguous (CSR). Per within-block pair: its two arc positions; per node: its
    source->node and node->sink arcs. Capacities are filled per solve."""
    total_arcs = 0
    for c in range(n_blocks):
        m = member_off[c + 1] - member_off[c]
        total_arcs += 2 * (within_off[c + 1] - within_off[c]) + 4 * m
    node_off = np.zeros(n_blocks + 1, np.int64)
    for c in range(n_blocks):
        node_off[c + 1] = node_off[c] + (member_off[c + 1] - member_off[c]) + 3
    start = np.zeros(node_off[n_blocks], np.int64)  # per block: m + 3 entries (CSR bounds)
    head = np.empty(total_arcs, np.int32)
    rev = np.empty(total_arcs, np.int32)  # block-local arc position of the reverse arc
    arc_off = np.zeros(n_blocks + 1, np.int64)
    pair_arc = np.empty((within_a.size, 2), np.int32)
    term_arc = np.empty((member_off[n_blocks], 2), np.int32)
    for c in range(n_blocks):
        m = member_off[c + 1] - member_off[c]
        e0, e1 = within_off[c], within_off[c + 1]
        arc_off[c + 1] = arc_off[c] + 2 * (e1 - e0) + 4 * m
        base = arc_off[c]
        st = start[node_off[c]:node_off[c + 1]]
        degree = np.zeros(m + 2, np.int64)
        for e in range(e0, e1):
            degree[within_a[e]] += 1
            degree[within_b[e]] += 1
        for i in range(m):
            degree[i] += 2
        degree[m] = m
        degree[m + 1] = m
        st[0] = 0
        for v in range(m + 2):
            st[v + 1] = st[v] + degree[v]
        pos = st[:m + 2].copy()
        for e in range(e0, e1):
            i, j = within_a[e], within_b[e]
            p, q = pos[i], pos[j]
            head[base + p] = j
            rev[base + p] = q
            head[base + q] = i
            rev[base + q] = p
            pos[i] += 1
            pos[j] += 1
            pair_arc[e, 0] = p
            pair_arc[e, 1] = q
        for i in range(m):
            p, q = pos[m], pos[i]  # source -> i, and its reverse
            head[base + p] = i
            rev[base + p] = q
            head[base + q] = m
            rev[base + q] = p
            pos[m] += 1
            pos[i] += 1
            term_arc[member_off[c] + i, 0] = p
            p, q = pos[i], pos[m + 1]  # i -> sink, and its reverse
            head[base + p] = m + 1
            rev[base + p] = q
            head[base + q] = i
            rev[base + q] = p
            pos[i] += 1
            pos[m + 1] += 1
            term_arc[member_off[c] + i, 1] = p
    return node_off, start, head, rev, arc_off, pair_arc, term_arc


@njit(nogil=True, cache=True)
def max_flow_sink_side(start, head, rev, cap, s, t, sink_side, source_arc, sink_arc):
    """Max flow on one block graph (``cap`` becomes the residual capacities), then ``sink_side[v]``
    = v can reach the sink in the residual graph. That set is the same for every maximum flow (the
    minimal sink side of the minimum cuts), and it is what PyMaxflow's Boykov-Kolmogorov reports as
    the sink segment (its free nodes default to the source), so the codes do not depend on the
    flow algorithm. Nodes 0..s-1 are the block's items, each with one arc from the source
    (``source_arc``) and one to the sink (``sink_arc``). First a greedy pass saturates the paths
    source -> i -> j -> sink, then Dinic's algorithm finishes the flow."""
    n_items = s
    for v in range(n_items):
        room = cap[source_arc[v]]
        if room <= 0:
            continue
        pushed = 0
        for p in range(start[v], start[v + 1]):
            x = head[p]
            if x >= n_items or cap[p] <= 0:
                continue
            q = sink_arc[x]
            amount = min(room - pushed, cap[p], cap[q])
            if amount > 0:
                cap[p] -= amount
                cap[rev[p]] += amount
                cap[q] -= amount
                cap[rev[q]] += amount
                pushed += amount
                if pushed == room:
                    break
        cap[source_arc[v]] -= pushed
        cap[rev[source_arc[v]]] += pushed
    n_nodes = start.size - 1
    level = np.empty(n_nodes, np.int64)
    queue = np.empty(n_nodes, np.int64)
    it = np.empty(n_nodes, np.int64)
    stack = np.empty(n_nodes, np.int64)
    via = np.empty(n_nodes, np.int64)
    flow = 0
    while True:
        level[:] = -1
        level[s] = 0
        queue[0] = s
        qh, qt = 0, 1
        while qh < qt:
            v = queue[qh]
            qh += 1
            for p in range(start[v], start[v + 1]):
                x = head[p]
                if cap[p] > 0 and level[x] < 0:
                    level[x] = level[v] + 1
                    queue[qt] = x
                    qt += 1
        if level[t] < 0:
            break
        for v in range(n_nodes):
            it[v] = start[v]
        while True:
            depth = 0
            stack[0] = s
            found = False
            while depth >= 0:
                v = stack[depth]
                if v == t:
                    found = True
                    break
                advanced = False
                while it[v] < start[v + 1]:
                    p = it[v]
                    x = head[p]
                    if cap[p] > 0 and level[x] == level[v] + 1:
                        via[depth] = p
                        depth += 1
                        stack[depth] = x
                        advanced = True
                        break
                    it[v] += 1
                if not advanced:
                    level[v] = -1
                    depth -= 1
                    if depth >= 0:
                        it[stack[depth]] += 1
            if not found:
                break
            bottleneck = cap[via[0]]
            for d in range(1, depth):
                if cap[via[d]] < bottleneck:
                    bottleneck = cap[via[d]]
            for d in range(depth):
                cap[via[d]] -= bottleneck
                cap[rev[via[d]]] += bottleneck
            flow += bottleneck
    sink_side[:] = False
    sink_side[t] = True
    queue[0] = t
    qh, qt = 0, 1
    while qh < qt:
        v = queue[qh]
        qh += 1
        for p in range(start[v], start[v + 1]):
            x = head[p]
            if not sink_side[x] and cap[rev[p]] > 0:
                sink_side[x] = True
                queue[qt] = x
                qt += 1
    return flow


@njit(nogil=True, cache=True)
def solve_single_block(m, a, b, w, unary):
    """Exact minimiser of sum_i unary_i b_i - sum_e w_e b_a b_b over b in {-1,+1}^m (integer w >= 0),
    as int8 codes: -1 exactly on the minimal sink side (what PyMaxflow returns). For tests and
    one-off use; ``block_sweeps`` reuses prepared layouts instead."""
    member_off = np.array([0, m], np.int64)
    within_off = np.array([0, a.size], np.int64)
    node_off, start, head, rev, arc_off, pair_arc, term_arc = build_block_graphs(1, member_off, within_off, a, b)
    cap = np.zeros(arc_off[1], np.int32)
    for e in range(a.size):
        cap[pair_arc[e, 0]] = w[e]
        cap[pair_arc[e, 1]] = w[e]
    for i in range(m):
        u = unary[i]
        cap[term_arc[i, 0]] = -u if u < 0 else 0
        cap[term_arc[i, 1]] = u if u > 0 else 0
    sink_side = np.empty(m + 2, np.bool_)
    max_flow_sink_side(start, head, rev, cap, m, m + 1, sink_side, term_arc[:, 0].copy(), term_arc[:, 1].copy())
    codes = np.empty(m, np.int8)
    for i in range(m):
        codes[i] = -1 if sink_side[i] else 1
    return codes


# The pairs are kept in block order, so that a block step streams through its own data: per block,
# its within-block pairs (local ends a, b; similar: y_ij = +1) and its cross-block pair ends (local
# node, global other end; dissimilar: y_ij = -1; every cross pair appears once in each end's block).
# h_ij is stored with each entry (twice for a cross pair, both copies updated alike), so that
# a_ij = h_ij - scale inside a block and h_ij + scale across blocks.
@njit(nogil=True, cache=True)
def build_pair_structure(labels, first, second, n_blocks):
    """The pairs in block order from the labels (blocks = classes, members in index order): per
    block its within-block pairs sorted by their first end, and its cross-block pair ends sorted by
    the block's own end (so per-node sums run over consecutive entries)."""
    n = labels.size
    member_off = np.zeros(n_blocks + 1, np.int64)
    for i in range(n):
        member_off[labels[i] + 1] += 1
    for c in range(n_blocks):
        member_off[c + 1] += member_off[c]
    members = np.empty(n, np.int32)
    position = np.empty(n, np.int64)  # an item's place in ``members``
    fill = member_off[:n_blocks].copy()
    for i in range(n):
        c = labels[i]
        members[fill[c]] = i
        position[i] = fill[c]
        fill[c] += 1
    within_count = np.zeros(n + 1, np.int64)
    cross_count = np.zeros(n + 1, np.int64)
    for p in range(first.size):
        a, b = first[p], second[p]
        if labels[a] == labels[b]:
            within_count[position[a] + 1] += 1
        else:
            cross_count[position[a] + 1] += 1
            cross_count[position[b] + 1] += 1
    for i in range(n):
        within_count[i + 1] += within_count[i]
        cross_count[i + 1] += cross_count[i]
    within_a = np.empty(within_count[n], np.int32)
    within_b = np.empty(within_count[n], np.int32)
    cross_node = np.empty(cross_count[n], np.int32)
    cross_other = np.empty(cross_count[n], np.int32)
    within_fill = within_count[:n].copy()
    cross_fill = cross_count[:n].copy()
    for p in range(first.size):
        a, b = first[p], second[p]
        ca, cb = labels[a], labels[b]
        if ca == cb:
            q = within_fill[position[a]]
            within_a[q] = position[a] - member_off[ca]
            within_b[q] = position[b] - member_off[cb]
            within_fill[position[a]] += 1
        else:
            q = cross_fill[position[a]]
            cross_node[q] = position[a] - member_off[ca]
            cross_other[q] = b
            cross_fill[position[a]] += 1
            q = cross_fill[position[b]]
            cross_node[q] = position[b] - member_off[cb]
            cross_other[q] = a
            cross_fill[position[b]] += 1
    within_off = np.empty(n_blocks + 1, np.int64)
    cross_off = np.empty(n_blocks + 1, np.int64)
    for c in range(n_blocks + 1):
        within_off[c] = within_count[member_off[c]]
        cross_off[c] = cross_count[member_off[c]]
    return member_off, members, within_off, within_a, within_b, cross_off, cross_node, cross_other


@njit(nogil=True, cache=True)
def bit_weights_and_objective(scale, member_off, members, within_off, within_a, within_b, within_h,
                              cross_off, cross_node, cross_h, weights_out):
    """Per item sum_j |a_ij| (float64, exact integers) and J(all +1) = sum over pairs of a_ij."""
    totals = np.zeros(weights_out.size, np.int64)
    objective_within = 0
    objective_cross_twice = 0
    for c in range(member_off.size - 1):
        m0 = member_off[c]
        current, run = -1, 0  # entries come in runs of one node (within: first end; cross: own end)
        for e in range(within_off[c], within_off[c + 1]):
            coef = np.int64(within_h[e]) - scale
            objective_within += coef
            magnitude = -coef if coef < 0 else coef
            if within_a[e] != current:
                if current >= 0:
                    totals[members[m0 + current]] += run
                current, run = within_a[e], 0
            run += magnitude
            totals[members[m0 + within_b[e]]] += magnitude
        if current >= 0:
            totals[members[m0 + current]] += run
        current, run = -1, 0
        for q in range(cross_off[c], cross_off[c + 1]):
            coef = np.int64(cross_h[q]) + scale
            objective_cross_twice += coef
            if cross_node[q] != current:
                if current >= 0:
                    totals[members[m0 + current]] += run
                current, run = cross_node[q], 0
            run += -coef if coef < 0 else coef
        if current >= 0:
            totals[members[m0 + current]] += run
    for i in range(totals.size):
        weights_out[i] = np.float64(totals[i])
    return objective_within + objective_cross_twice // 2


@njit(nogil=True, cache=True)
def add_bit_to_affinity(codes, scale, member_off, members, within_off, within_a, within_b, within_h,
                        cross_off, cross_node, cross_other, cross_h):
    """h_ij += b_i b_j for every pair; returns sum over pairs of (scale y_ij - h_ij)^2 (exact)."""
    total_within = 0
    total_cross_twice = 0
    for c in range(member_off.size - 1):
        m0 = member_off[c]
        for e in range(within_off[c], within_off[c + 1]):
            h = np.int64(within_h[e]) + np.int64(codes[members[m0 + within_a[e]]]) * codes[members[m0 + within_b[e]]]
            within_h[e] = h
            total_within += (scale - h) * (scale - h)
        for q in range(cross_off[c], cross_off[c + 1]):
            h = np.int64(cross_h[q]) + np.int64(codes[members[m0 + cross_node[q]]]) * codes[cross_other[q]]
            cross_h[q] = h
            total_cross_twice += (scale + h) * (scale + h)
    return total_within + total_cross_twice // 2


@njit(nogil=True, cache=True)
def block_sweeps(codes, scale, orders, member_off, members, within_off, within_a, within_b, within_h,
                 cross_off, cross_node, cross_other, cross_h, node_off, start, head, rev, arc_off, pair_arc,
                 term_arc, objective0, trace, trace_blocks):
    """Block coordinate descent of one bit (the steps of ``fasthash.block_coordinate_descent``):
    blocks visited in ``orders[sweep]``; each block step is an exact min cut with the other blocks
    fixed, kept only if it lowers J. ``trace[1:]`` gets J after each sweep (or each block)."""
    objective = objective0
    n_blocks = member_off.size - 1
    max_members = 0
    max_arcs = 0
    for c in range(n_blocks):
        max_members = max(max_members, member_off[c + 1] - member_off[c])
        max_arcs = max(max_arcs, arc_off[c + 1] - arc_off[c])
    unary = np.empty(max_members, np.int64)
    old = np.empty(max_members, np.int8)
    new = np.empty(max_members, np.int8)
    cap = np.empty(max_arcs, np.int32)
    sink_side = np.empty(max_members + 2, np.bool_)
    entry = 1
    for sweep in range(orders.shape[0]):
        for c in orders[sweep]:
            m0, m1 = member_off[c], member_off[c + 1]
            m = m1 - m0
            for i in range(m):
                old[i] = codes[members[m0 + i]]
            unary[:m] = 0
            current, run = -1, 0  # a block's cross entries come in runs of one node
            for q in range(cross_off[c], cross_off[c + 1]):
                if cross_node[q] != current:
                    if current >= 0:
                        unary[current] = run
                    current, run = cross_node[q], 0
                run += (np.int64(cross_h[q]) + scale) * codes[cross_other[q]]
            if current >= 0:
                unary[current] = run
            e0, e1 = within_off[c], within_off[c + 1]
            if e1 > e0:
                a0, a1 = arc_off[c], arc_off[c + 1]
                block_cap = cap[:a1 - a0]
                for e in range(e0, e1):
                    weight = scale - np.int64(within_h[e])  # -a_ij > 0
                    block_cap[pair_arc[e, 0]] = weight
                    block_cap[pair_arc[e, 1]] = weight
                for i in range(m):
                    u = unary[i]
                    block_cap[term_arc[m0 + i, 0]] = -u if u < 0 else 0  # source->i: paid if i gets -1
                    block_cap[term_arc[m0 + i, 1]] = u if u > 0 else 0  # i->sink: paid if i gets +1
                for i in range(m):  # reverse arcs of the terminal arcs start empty
                    block_cap[rev[a0 + term_arc[m0 + i, 0]]] = 0
                    block_cap[rev[a0 + term_arc[m0 + i, 1]]] = 0
                max_flow_sink_side(start[node_off[c]:node_off[c + 1]], head[a0:a1], rev[a0:a1], block_cap, m, m + 1,
                                   sink_side[:m + 2], term_arc[m0:m1, 0], term_arc[m0:m1, 1])
                for i in range(m):
                    new[i] = -1 if sink_side[i] else 1
            else:
                for i in range(m):
                    u = unary[i]
                    new[i] = -1 if u > 0 else (1 if u < 0 else old[i])
            # change of the block's terms (the rest of J does not depend on the block)
            change = 0
            for i in range(m):
                change += unary[i] * (np.int64(new[i]) - old[i])
            for e in range(e0, e1):
                coef = np.int64(within_h[e]) - scale
                ia, ib = within_a[e], within_b[e]
                change += coef * (np.int64(new[ia]) * new[ib] - np.int64(old[ia]) * old[ib])
            if change < 0:
                for i in range(m):
                    codes[members[m0 + i]] = new[i]
                objective += change
            if trace_blocks:
                trace[entry] = objective
                entry += 1
        if not trace_blocks:
            trace[entry] = objective
            entry += 1
    return objective


# ========================================================================================= binning
@njit(nogil=True, cache=True, inline="always")
def _search_step(cuts, j, position, x, step):
    return position + step * (cuts[j, position + step - 1] < x)


@njit(nogil=True, cache=True)
def bin_rows(X, row0, row1, cuts, out):
    """out[i, j] = the number of cuts[j] below X[i, j], rows row0..row1-1 (NumPy
    ``searchsorted(side='left')``: the first position whose cut is >= x). ``cuts`` is padded with
    +inf to 255 columns, so a binary search of eight fixed halving steps finds it. Eight features
    are searched in lockstep (eight independent load chains) over a tile of 64 rows, so that their
    cuts stay in the L1 cache."""
    n_features = X.shape[1]
    n_groups = n_features // 8
    for t0 in range(row0, row1, 64):
        t1 = min(t0 + 64, row1)
        for g in range(n_groups):
            j = 8 * g
            for i in range(t0, t1):
                x0, x1, x2, x3 = X[i, j], X[i, j + 1], X[i, j + 2], X[i, j + 3]
                x4, x5, x6, x7 = X[i, j + 4], X[i, j + 5], X[i, j + 6], X[i, j + 7]
                p0 = p1 = p2 = p3 = p4 = p5 = p6 = p7 = 0
                for step in (128, 64, 32, 16, 8, 4, 2, 1):
                    p0 = _search_step(cuts, j, p0, x0, step)
                    p1 = _search_step(cuts, j + 1, p1, x1, step)
                    p2 = _search_step(cuts, j + 2, p2, x2, step)
                    p3 = _search_step(cuts, j + 3, p3, x3, step)
                    p4 = _search_step(cuts, j + 4, p4, x4, step)
                    p5 = _search_step(cuts, j + 5, p5, x5, step)
                    p6 = _search_step(cuts, j + 6, p6, x6, step)
                    p7 = _search_step(cuts, j + 7, p7, x7, step)
                out[i, j], out[i, j + 1], out[i, j + 2], out[i, j + 3] = p0, p1, p2, p3
                out[i, j + 4], out[i, j + 5], out[i, j + 6], out[i, j + 7] = p4, p5, p6, p7
        for j in range(8 * n_groups, n_features):
            for i in range(t0, t1):
                x = X[i, j]
                position = 0
                for step in (128, 64, 32, 16, 8, 4, 2, 1):
                    position = _search_step(cuts, j, position, x, step)
                out[i, j] = position
