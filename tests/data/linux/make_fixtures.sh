#!/bin/sh
# Re-creates the Linux fixtures on a machine with perf and root.
# load.c: N threads that spin (SLEEP_US=0) or spin ~1 ms then sleep SLEEP_US.
set -e
cd "$(dirname "$0")"
gcc -O2 -pthread -o /tmp/rs_load load.c
EV=sched:sched_switch,sched:sched_wakeup,sched:sched_wakeup_new,sched:sched_process_exit,sched:sched_process_fork
# 4 busy threads on 2 cores for 1 s
perf record -q -k mono -e $EV -a -o busy4.perf.data -- /tmp/rs_load 4 1 0 | head -1 > busy4.pid
# 3 threads that spin 1 ms and sleep 2 ms, for 1 s
perf record -q -k mono -e $EV -a -o sleepy3.perf.data -- /tmp/rs_load 3 1 2000 | head -1 > sleepy3.pid
for f in busy4 sleepy3; do
  [ $f = busy4 ] && perf script -i $f.perf.data --ns > $f.perf-script.txt
  perf script -i $f.perf.data -F comm,pid,tid,cpu,time,event,trace --ns > $f.perf-script-pid.txt
  perf sched timehist -i $f.perf.data -s > $f.timehist.txt 2>/dev/null || true
done
# ftrace text from a private tracefs instance (record-tgid on), 2 threads, 0.3 s
I=/sys/kernel/tracing/instances/rs_fixture
mkdir $I
echo 1 > $I/options/record-tgid
for e in sched_switch sched_wakeup sched_wakeup_new sched_process_exit sched_process_fork; do
  echo 1 > $I/events/sched/$e/enable; done
/tmp/rs_load 2 0.3 2000 > /dev/null
cat $I/trace > sleepy2.ftrace.txt
echo 0 > $I/tracing_on; echo 0 > $I/events/enable; rmdir $I
# 2 threads pinned to CPU 0 (spin 1 ms, sleep 3 ms, 1 s); the threads print their own schedstat
perf record -q -k mono -e $EV -a -o pinned2.perf.data -- taskset -c 0 /tmp/rs_load 2 1 3000 > pinned2.schedstat.txt
head -1 pinned2.schedstat.txt > pinned2.pid
perf script -i pinned2.perf.data -F comm,pid,tid,cpu,time,event,trace --ns > pinned2.perf-script-pid.txt
perf sched timehist -i pinned2.perf.data -s > pinned2.timehist.txt 2>/dev/null || true
# ring-buffer loss: a one-page buffer during a context-switch benchmark
perf record -q -m 1 -k mono -e $EV -a -o lossy.perf.data -- taskset -c 1 perf bench sched pipe -l 6000 > /dev/null
# a real QEMU/TCG VM (4 vCPUs, no disk: SeaBIOS runs on vCPU 0, the others wait for SIPI)
qemu-system-x86_64 -name guest=rsvm,debug-threads=on -machine q35 -accel tcg,thread=multi \
  -smp 4 -m 64 -display none -nodefaults -no-reboot -serial none -monitor none &
QEMU=$!; sleep 1.5
perf record -q -k mono -e $EV -a -o vm4.perf.data -- sleep 1
kill $QEMU; wait $QEMU || true
