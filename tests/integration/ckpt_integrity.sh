#!/bin/sh
# Damaged checkpoints are refused with the file and byte offset: a flipped
# byte (inspect exit 1, --resume PATH error, --resume auto falls back to the
# previous checkpoint and says so), a truncated shard, a missing manifest, a
# newer format version, another model shape; auto with checkpoints but none
# valid fails naming them (starts from scratch with ckpt.if_none_valid =
# restart); auto with no checkpoint at all starts from scratch.
. tests/common/ckpt_common.sh
fail() { echo "FAIL ckpt_integrity: $*"; exit 1; }
expect() { # exit-status pattern description -- command...
  want=$1 pat=$2 what=$3; shift 3
  out=$("$@" 2>&1); rc=$?
  [ $rc -eq "$want" ] && echo "$out" | grep -q -- "$pat" || { echo "$out" | tail -5; fail "$what (exit $rc, expected $want and '$pat')"; }
}
flip() { # file byte-offset
  b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $(( (b + 1) % 256 )))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2> /dev/null
}
r=$d/run
train 1 "$d/a.log" --set ckpt.every_steps=10 --set run.dir="$r" || { tail -5 "$d/a.log"; fail "training"; }
expect 0 "every checksum verified: ok" "inspect of a good run directory" "$MPILM" inspect "$r"
expect 0 "step 10," "inspect of a step directory" "$MPILM" inspect "$r/step-0000010"
size=$(wc -c < "$r/step-0000020/shard-00000.bin")

# one flipped byte in the exp_avg section of the latest checkpoint
cp -r "$r" "$d/pristine"
flip "$r/step-0000020/shard-00000.bin" $((size / 3 + 100))
expect 1 "shard-00000.bin: checksum mismatch in section exp_avg at byte offset $((size / 3))" "inspect of a flipped byte" \
  "$MPILM" inspect "$r"
expect 1 "checksum mismatch" "--resume PATH of a corrupt checkpoint" \
  "$MPILM" train --config "$d/tiny.ini" --set run.dir="$r" --resume "$r/step-0000020"
expect 0 "resuming from $r/step-0000010 instead" "--resume auto falling back" \
  "$MPILM" train --config "$d/tiny.ini" --set run.dir="$r" --resume auto
expect 0 "every checksum verified: ok" "inspect after the fallback run rewrote step 20" "$MPILM" inspect "$r"
cmp "$r/step-0000020/shard-00000.bin" "$d/pristine/step-0000020/shard-00000.bin" ||
  fail "the run resumed from step 10 did not reproduce step 20"

# truncated shard
head -c $((size - 7)) "$d/pristine/step-0000010/shard-00000.bin" > "$r/step-0000010/shard-00000.bin"
expect 1 "shard-00000.bin: the file is $((size - 7)) bytes (expected $size: truncated" "truncated shard" \
  "$MPILM" inspect "$r/step-0000010"
# missing manifest
cp -r "$d/pristine/step-0000010" "$d/nomanifest" && rm "$d/nomanifest/manifest.json"
expect 1 "no manifest.json" "missing manifest" "$MPILM" inspect "$d/nomanifest"
expect 1 "no manifest.json" "--resume of a directory without manifest" \
  "$MPILM" train --config "$d/tiny.ini" --set run.dir="$d/x" --resume "$d/nomanifest"
# a newer format version
cp -r "$d/pristine/step-0000010" "$d/newer"
sed -i 's/"version":[^,]*/"version":	2/' "$d/newer/manifest.json"
expect 1 "checkpoint format version 2 is not supported (this mpilm reads version 1)" "newer version" \
  "$MPILM" inspect "$d/newer"
# another model shape
expect 2 "model.d_model is 32 in the checkpoint but 64 in the configuration" "another d_model" \
  "$MPILM" train --config "$d/tiny.ini" --set model.d_model=64 --set run.dir="$d/y" --resume "$d/pristine"
expect 2 "model.family is gpt in the checkpoint but bert" "another family" \
  "$MPILM" train --config "$d/tiny.ini" --set model.family=bert --set run.dir="$d/y" --resume "$d/pristine"
# auto with nothing valid: an error naming why, or from scratch when asked; PATH that does not exist: an error
mkdir "$d/bad" && cp -r "$d/newer" "$d/bad/step-0000010" && ln -s step-0000010 "$d/bad/latest"
expect 1 "no valid checkpoint in $d/bad, which holds checkpoints (latest: .*version 2 is not supported" \
  "auto without a valid checkpoint" \
  "$MPILM" train --config "$d/tiny.ini" --set train.steps=2 --set run.dir="$d/bad" --resume auto
expect 0 "no valid checkpoint in $d/bad" "auto without a valid checkpoint, ckpt.if_none_valid = restart" \
  "$MPILM" train --config "$d/tiny.ini" --set train.steps=2 --set run.dir="$d/bad" --resume auto \
  --set ckpt.if_none_valid=restart
expect 0 "starting from scratch" "auto in an empty run directory" \
  "$MPILM" train --config "$d/tiny.ini" --set train.steps=2 --set run.dir="$d/empty" --resume auto
expect 1 "not a checkpoint" "--resume of a missing path" \
  "$MPILM" train --config "$d/tiny.ini" --set run.dir="$d/z" --resume "$d/nowhere"
echo "ckpt_integrity: ok"
