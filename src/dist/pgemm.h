/* dist/pgemm — tensor-parallel GEMM over ScaLAPACK (psgemm, SUMMA) on a BLACS
 * process grid built from a given communicator (the tensor-parallel group).
 *
 * Owns: the P x Q grid of a communicator (BLACS context from
 * Csys2blacs_handle, never a second world), block-cyclic distributed
 * matrices, their extraction from a replicated array (no communication), their
 * gathering back to a replicated array on every rank of the grid, and
 * C = alpha op(A) op(B) + beta C over them; the model of the bytes each rank
 * moves for it; PBLAS's logical block size (it defines pilaenv_, see pgemm.c).
 * Must not touch: models, pipelines, files, printing, MPI_COMM_WORLD.
 *
 * Layout. mpilm is row-major; ScaLAPACK is column-major. A row-major R x C
 * matrix is, byte for byte, the column-major C x R matrix (its transpose), so
 * a pgemm_matrix is described in row-major terms (rows, cols) and handed to
 * ScaLAPACK as the column-major cols x rows matrix, without a copy. Hence:
 *   - the matrix's ROWS are dealt in blocks of row_block round-robin over the
 *     grid's Q process COLUMNS, its COLS in blocks of col_block over the P
 *     process ROWS (ScaLAPACK's block-cyclic layout of the transpose);
 *   - each rank holds its pieces as one row-major local_rows x local_cols
 *     array (row stride ld = local_cols), in global order within the rank, so
 *     elementwise kernels (GELU, scaling) run on `data` as they are;
 *   - C = op(A) op(B) in row-major terms is Cᵀ = op(B)ᵀ op(A)ᵀ for ScaLAPACK:
 *     pgemm_run calls psgemm with the operands and transposes swapped.
 * A linear layer (weight W (OC,C) as nn.Linear, X (N,C), Y (N,OC)):
 *   forward          Y  = X Wᵀ     pgemm_run(0, 1, 1, X, W, 0, Y)
 *   weight gradient  dW += dYᵀ X   pgemm_run(1, 0, 1, dY, X, 1, dW)
 *   input gradient   dX = dY W     pgemm_run(0, 0, 1, dY, W, 0, dX)
 *
 * Grid shapes (pgemm_grid_dims): the most square P x Q = t with P <= Q.
 * Accepted: t = 1, 2, 3 (grids 1x1, 1x2, 1x3) and every composite t (4 = 2x2,
 * 6 = 2x3, 8 = 2x4, ...). Refused: a prime t >= 5, whose only grid 1 x t is
 * the 1D split with none of the O(1/sqrt t) saving 2D mode exists for.
 */
#ifndef MPILM_DIST_PGEMM_H
#define MPILM_DIST_PGEMM_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

/* Block size (rows = cols per block) measured fastest over 32, 64, 128, 256
 * on gpt2-small's FFN and vocabulary GEMMs at t = 1, 2, 4
 * (tests/bench/bench_pgemm.sh; docs/design.md, "Tensor-parallel GEMM over
 * ScaLAPACK", has the table). */
enum { PGEMM_BLOCK_DEFAULT = 256 };

/* The block size for matrices whose smallest dimension is min_dim on a P x Q
 * grid: PGEMM_BLOCK_DEFAULT, halved (not below 32) until every process row
 * and column holds at least one block of that dimension, so no rank idles.
 * Pure. Operands of one product may have different block sizes (tested);
 * only equal ones were timed. */
int pgemm_block_choose(int P, int Q, int min_dim);

typedef struct pgemm_grid pgemm_grid;

/* The grid for t ranks: P x Q = t, P <= Q, most square. ST_CONFIG for t < 1
 * and for a prime t >= 5 (see above). Pure: no MPI. */
status_t pgemm_grid_dims(int t, int *P, int *Q);

/* The grid over every rank of comm (collective over comm): rank r of comm is
 * process (r / Q, r % Q). comm is duplicated; the caller keeps its own.
 * pgemm_grid_create takes P x Q from pgemm_grid_dims; pgemm_grid_create_pq
 * takes them from the caller (P x Q must be comm's size): the 2d model turns
 * the grid to Q x P when that moves fewer bytes (dist/tp_grid.c). */
status_t pgemm_grid_create(pgemm_grid **g, MPI_Comm comm);
status_t pgemm_grid_create_pq(pgemm_grid **g, MPI_Comm comm, int P, int Q);
/* Collective over the grid; NULL is a no-op. */
void pgemm_grid_free(pgemm_grid *g);

/* P, Q and this rank's process row and column. */
void pgemm_grid_shape(const pgemm_grid *g, int *P, int *Q, int *prow, int *pcol);
/* The grid's own communicator (a duplicate of the one given). */
MPI_Comm pgemm_grid_comm(const pgemm_grid *g);
/* The P ranks of this rank's process column: every matrix's rows are dealt
 * over process columns, so these ranks hold the pieces of the same rows (rank
 * in it = process row). Row-wise reductions over a distributed matrix (the
 * max and sum of exponentials of a parallel cross-entropy over the
 * vocabulary) run over it. */
MPI_Comm pgemm_grid_row_comm(const pgemm_grid *g);

typedef struct pgemm_matrix {
    const pgemm_grid *grid;
    int rows, cols;               /* global, row-major */
    int row_block, col_block;     /* rows per block, cols per block */
    int local_rows, local_cols;   /* this rank's part */
    int ld;                       /* local row stride: max(1, local_cols) */
    int desc[9];                  /* ScaLAPACK descriptor of the column-major cols x rows matrix */
    float *data;                  /* local_rows x ld, row-major; owned */
    int *counts, *displs;         /* every rank's local element count and its offset in a gather */
    float *gather_buf;            /* rows*cols floats, allocated on the first gather, reused */
} pgemm_matrix;

/* A zeroed rows x cols matrix on grid g. Refuses sizes < 1, blocks < 1, and
 * rows*cols beyond INT_MAX (MPI counts). */
status_t pgemm_matrix_create(pgemm_matrix *a, const pgemm_grid *g, int rows, int cols, int row_block,
                             int col_block);
void pgemm_matrix_free(pgemm_matrix *a);

/* The global row of local row i and the global column of local column j. */
int pgemm_matrix_global_row(const pgemm_matrix *a, int i);
int pgemm_matrix_global_col(const pgemm_matrix *a, int j);

/* a's local part from full, a replicated row-major rows x cols array with row
 * stride ldf (>= cols) that every rank holds. No communication. */
status_t pgemm_extract(pgemm_matrix *a, const float *full, int ldf);

/* The whole of a into full (row-major, row stride ldf >= cols) on every rank
 * of the grid: one MPI_Allgatherv of the local parts (each already packed),
 * then each rank places the parts. Collective over the grid. Bit-exact. */
status_t pgemm_gather(pgemm_matrix *a, float *full, int ldf);

/* C = alpha op(A) op(B) + beta C in row-major terms, op(X) = Xᵀ when tX:
 * op(A) is M x K, op(B) K x N, C M x N. Refuses shapes that do not match and
 * operands on different grids. Collective over the grid. */
status_t pgemm_run(int ta, int tb, float alpha, const pgemm_matrix *A, const pgemm_matrix *B, float beta,
                   pgemm_matrix *C);

/* Bytes one rank receives, by the model of the algorithm (4-byte floats):
 * a gather of a: everything but its own part, (rows*cols - local) * 4;
 * pgemm_run with op(A) M x K, op(B) K x N (the caller's row-major terms) on
 * a P x Q grid: PBLAS runs SUMMA keeping one of A, B, C in place and moving
 * the other two (broadcast panels of A or B, reduced partial sums of C). A
 * matrix moved along the process rows costs |X|/Q (P-1)/P per rank, along
 * the columns |X|/P (Q-1)/Q; kept in place:
 *   C: M K/Q (P-1)/P + K N/P (Q-1)/Q
 *   A: K N/P (Q-1)/Q + M N/Q (P-1)/P
 *   B: M K/Q (P-1)/P + M N/P (Q-1)/Q
 * and the model is the cheapest of the three, times 4: a LOWER BOUND, exact
 * when PBLAS moves untransposed operands. PBLAS chooses by its own estimate
 * and a transposed operand needs more than one broadcast (the bytes counted
 * by tests/bench/bench_pgemm against this bound: docs/design.md,
 * "Tensor-parallel GEMM over ScaLAPACK"). Pure, so it projects to grids
 * larger than the one at hand. */
uint64_t pgemm_gather_bytes(const pgemm_matrix *a);
uint64_t pgemm_run_bytes(int P, int Q, int M, int N, int K);

#endif
