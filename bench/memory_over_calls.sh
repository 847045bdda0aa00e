#!/usr/bin/env bash
# emfitd's memory over repeated calls (docs/benchmarks.md): starts `emfitd --workers=1`, runs
# four `emfit fit --max_iter=0` of a 1,000,000 x 16 CSV (made once, seeded, with Debian's
# numpy), and prints the server's peak (VmHWM) and resident memory (VmRSS) after each call and
# again 2 s later, once the server has been quiet for a second (it then trims its heap).
#   bench/memory_over_calls.sh BUILD_DIR [EMFITD]
set -euo pipefail
build=${1:?usage: $0 BUILD_DIR [EMFITD]}
emfitd=${2:-$build/server/emfitd}
dir=$(mktemp -d /tmp/emfit-memory-XXXXXX)
csv=/tmp/emfit-memory-1000000x16.csv
if [ ! -s "$csv" ]; then
  /usr/bin/python3 -c "
import numpy as np
x = np.random.RandomState(1).normal(size=(1000000, 16))
np.savetxt('$csv', x, fmt='%.10g', delimiter=',', comments='',
           header=','.join('c%d' % i for i in range(16)))"
fi
"$emfitd" --host=127.0.0.1 --port=0 --port_file="$dir/port" --workers=1 --drain_delay=0s \
  2>"$dir/emfitd.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
while [ ! -s "$dir/port" ]; do sleep 0.1; done
mb() { awk -v k="$1:" '$1 == k {printf "%.1f", $2 / 1024}' "/proc/$pid/status"; }
echo "idle: $(mb VmRSS) MB"
for call in 1 2 3 4; do
  "$build/client/emfit" fit --server="127.0.0.1:$(cat "$dir/port")" --data="$csv" --k=2 \
    --max_iter=0 --progress=none >/dev/null
  peak=$(mb VmHWM) after=$(mb VmRSS)
  sleep 2
  echo "call $call: peak $peak MB, resident after the call $after MB, when quiet $(mb VmRSS) MB"
done
