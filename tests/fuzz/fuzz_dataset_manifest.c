/* Fuzz target dataset_manifest: DIR/manifest.json of a dataset
 * (data/dataset.c) next to a fixed WordPiece vocabulary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char dir[4200];
    if (!dir[0]) {
        fuzz_subdir("dataset", dir, sizeof dir);
        fuzz_write_wordpiece_vocab(dir);
    }
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", dir, DATASET_MANIFEST);
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f && (size == 0 || fwrite(data, 1, size, f) == size) && fclose(f) == 0, "cannot write %s", path);
    dataset d;
    if (dataset_open(&d, dir) == ST_OK) {
        FUZZ_CHECK(d.info.n_shards > 0, "an open dataset has no shard");
        for (int i = 0; i < d.info.n_shards; i++) {
            char shard[8400];
            dataset_shard_path(&d, i, shard, sizeof shard);
            const dataset_shard *s = &d.shards[i];
            shard_header h = {.fingerprint = d.info.fingerprint, .vocab_size = d.info.vocab_size,
                              .token_width = d.info.token_width, .n_frames = s->n_frames,
                              .n_documents = s->n_documents, .n_sentences = s->n_sentences, .n_tokens = s->n_tokens};
            FUZZ_CHECK(dataset_check_shard(&d, i, &h) == ST_OK, "shard %d disagrees with its own manifest entry: %s",
                       i, st_message());
            dataset_verify_shard(&d, i);
        }
        dataset_close(&d);
    }
    st_clear();
    return 0;
}
