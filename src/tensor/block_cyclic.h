/* tensor/block_cyclic — the index arithmetic of a block-cyclic distribution
 * (ScaLAPACK's, first block on process 0): which elements of a dimension of
 * n, dealt in blocks of nb round-robin over np processes, process p holds.
 *
 * Owns: pure arithmetic shared by dist/pgemm (the distributed matrices) and
 * model/ (the 2d tensor-parallel FFN's local parts of weights and
 * activations), so both agree on the layout by construction.
 * Must not touch: MPI, memory, anything stateful.
 */
#ifndef MPILM_TENSOR_BLOCK_CYCLIC_H
#define MPILM_TENSOR_BLOCK_CYCLIC_H

/* Elements process p holds (ScaLAPACK's numroc with source process 0). */
static inline int block_cyclic_count(int n, int nb, int p, int np)
{
    int blocks = n / nb, count = blocks / np * nb, extra = blocks % np;
    if (p < extra) count += nb;
    else if (p == extra) count += n % nb;
    return count;
}

/* The global index of local index i on process p. */
static inline int block_cyclic_global(int i, int nb, int p, int np)
{
    return (i / nb * np + p) * nb + i % nb;
}

#endif
