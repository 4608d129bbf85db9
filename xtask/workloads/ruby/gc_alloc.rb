# Allocation workload for pausewatch's Ruby end-to-end test.
#
# Allocates short-lived objects (minor collections) and keeps a rotating
# set alive long enough to be promoted, so the old generation grows and the
# runtime starts major collections of its own (incremental ones, triggered
# by allocation); every MAJOR_EVERY rounds it also asks for one with
# `GC.start` (a non-incremental major with an immediate sweep).
#
# Its account of the measured phase is Ruby's own: `GC.stat` (`count`,
# `minor_gc_count`, `major_gc_count`, and `time`, which Ruby 3.1 keeps in
# milliseconds of process CPU time from each gc_enter to gc_exit),
# `GC.total_time` (the same in nanoseconds) and every `GC::Profiler` record
# (`GC_TIME`, process CPU seconds of the collection's marking and of every
# sweep step after it, which is what the USDT probes bracket; `GC_FLAGS`
# says minor or major).
#
# Protocol (stderr, see xtask/src/scripted.rs): prints
# `pausewatch-workload: ready`, waits for a line on stdin, runs for SECONDS
# (ARGV[0], default 3), prints `pausewatch-workload: done {json}` and waits
# for stdin to close before exiting.
#
# The window is exact: `GC.disable` before the gate finishes any pending
# lazy sweep (it runs gc_rest) and stops collections, so nothing of the
# set-up happens inside it; `GC.enable` opens it. At the end `GC.disable`
# again finishes the last lazy sweep (its steps are in the last record and
# fire the probes) before the numbers are read, and nothing is collected
# after that while the tracer is attached.

require "json"

PREFIX = "pausewatch-workload: "
MAJOR_EVERY = 400

def say(text)
  $stderr.write(PREFIX + text + "\n")
  $stderr.flush
end

def stat_window(before, after)
  %i[count minor_gc_count major_gc_count time].to_h { |k| [k, after[k] - before[k]] }
end

seconds = (ARGV[0] || "3").to_f
GC.start
GC.disable
GC::Profiler.clear
say("ready")
$stdin.gets

GC::Profiler.enable
stat0 = GC.stat
total0 = GC.total_time
clock = Process::CLOCK_MONOTONIC
t0 = Process.clock_gettime(clock, :nanosecond)
deadline = t0 + (seconds * 1e9).to_i
GC.enable

rounds = 0
survivors = []
while Process.clock_gettime(clock, :nanosecond) < deadline
  garbage = Array.new(2000) { |i| "s#{i}" }
  survivors << Array.new(50) { |i| [i, "k#{i}"] }
  survivors.shift(250) if survivors.size > 1000
  garbage = nil
  rounds += 1
  GC.start if (rounds % MAJOR_EVERY).zero?
end

GC.disable
elapsed_ns = Process.clock_gettime(clock, :nanosecond) - t0
stat1 = GC.stat
total1 = GC.total_time
records = GC::Profiler.raw_data.map do |r|
  flags = r[:GC_FLAGS]
  {
    major_by: flags[:major_by]&.to_s,
    gc_by: flags[:gc_by]&.to_s,
    immediate_sweep: flags[:immediate_sweep],
    gc_time_s: r[:GC_TIME],
  }
end
GC::Profiler.disable

say("done " + JSON.generate({
  stat: stat_window(stat0, stat1),
  total_time_ns: total1 - total0,
  records: records,
  elapsed_ns: elapsed_ns,
  rounds: rounds,
}))
$stdin.read
