# Sourced by halfrate.sh and instructions.sh, in their work directory, with K (kofu) and
# L (kofu-load) set: fixtures and a synthesized trace of residence sessions with a
# tenth of people's think times and no misbehaviour, starting over 11:00-11:10.
#   make_trace RESIDENTS SESSIONS_PER_DAY   writes fx.jsonl and trace.msgpack, sets N
#   speed_for RATE                          the --speed that replays them at RATE sessions/s
#   port                                    a free loopback port
make_trace() {
  "$K" fixtures --seed 1 --residents "$1" --kiosks 200 > fx.jsonl
  "$L" synth --fixtures fx.jsonl --out trace.msgpack --sessions-per-day "$2" --think 0.1 \
    --from 11:00 --to 11:10 --abandon 0 --wrong-signature 0 --retry 0 --duplicate-card 0 \
    > synth.txt 2>&1
  # "wrote N sessions over ..."; they start within the 600 s window.
  N=$(grep -oE "wrote [0-9]+ sessions" synth.txt | grep -oE "[0-9]+")
}
speed_for() { python3 -c "print(round($1 / ($N / 600.0), 3))"; }
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
