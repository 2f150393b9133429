// SPDX-License-Identifier: GPL-2.0
/*
 * Domain runstate accounting inside the kernel.
 *
 * Every followed task (a "member") belongs to one group (a VM, process,
 * cgroup or thread group).  Per group the kernel keeps how many members are
 * running, runnable and blocked, the group's current domain state, when that
 * state was entered and the nanoseconds spent in each state so far.  All of it
 * changes under the group's spin lock, so user space reading a group with
 * BPF_F_LOCK always gets a consistent set of counters.
 *
 * Members are put in the member table by user space; they count from their
 * first event or from the one-off task iterator run ("rs_init_members"), which
 * reads each new member's scheduling state exactly.  Threads and processes
 * forked by a member join the table here, so none is missed.
 *
 * A group user space creates is held (no state, no time) until all the members
 * it was created with are counted, then released ("rs_release"): the iterator
 * counts them one after the other, and a group with only some of them counted
 * would show a state none of them was in together.  For the same reason a switch
 * between two members of one group moves both under one lock.
 *
 * Built CO-RE: the few kernel structure fields used are declared below with
 * preserve_access_index and relocated against the running kernel's BTF when
 * the object is loaded, so one object works on every BTF-enabled kernel.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

/* --- the kernel structures read, only the fields used (CO-RE relocated) --- */
struct sched_entity {
	unsigned char sched_delayed;
} __attribute__((preserve_access_index));

struct task_struct {
	unsigned int __state;
	int on_cpu;
	int on_rq;
	int pid;
	int tgid;
	struct sched_entity se;
} __attribute__((preserve_access_index));

struct bpf_iter_meta {
	void *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
} __attribute__((preserve_access_index));

/* raw task __state bits */
#define RS_TASK_DEAD 0x80
#define RS_TASK_NEW 0x800

/* member states (the first three are the counted ones) */
#define M_RUNNING 0
#define M_RUNNABLE 1
#define M_BLOCKED 2
#define M_UNSEEN 3 /* in the table, not yet counted */
#define M_UNKNOWN 4 /* counted, state not known (until its next event): the group is lost */

/* domain states, numbered as the project's DomainState */
#define D_FULL_RUN 0
#define D_FULL_CONTENTION 1
#define D_CONCURRENCY_HAZARD 2
#define D_BLOCKED 3
#define D_PARTIAL_RUN 4
#define D_PARTIAL_CONTENTION 5
#define D_LOST 6
#define D_NSTATES 7
#define D_NONE -1

/* how forked processes are grouped (config slot 0) */
#define FORK_JOINS_PARENT 0
#define FORK_NEW_PROCESS_GROUP 1 /* group = tgid of a new process */
#define FORK_NEW_THREAD_GROUP 2  /* group = tid of every new task */

struct rs_group {
	struct bpf_spin_lock lock;
	__u32 members;
	__s32 n_running;
	__s32 n_runnable;
	__s32 n_blocked;
	__s32 n_unknown;
	__s32 state;
	__u32 held; /* created by user space, not all its first members counted yet */
	__u64 since;
	__u64 ns[D_NSTATES];
	__u64 missed;
	__u64 changes;
	__u64 first_ns;
	/* ns summed over members in each member state, up to mlast */
	__u64 member_ns[3];
	__u64 mlast;
};

struct rs_member {
	__u32 group;
	__u32 state;
	__u64 since;
	__u64 ns[4]; /* running, runnable, blocked, unknown */
	/* the clock of the latest switch-in applied to the member (see stale_switch_out()) */
	__u64 last_in;
};

/* the argument of rs_set_state: a member's state as user space knows it */
struct rs_state_arg {
	__u32 tid;
	__u32 state;
};

/* the argument of rs_release: a held group whose first members are all counted */
struct rs_release_arg {
	__u32 group;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct rs_member);
} members SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct rs_group);
} groups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} config SEC(".maps");

/*
 * Members a full table could not take (T_DROPPED) and groups made here for forked
 * tasks (T_NEW_GROUPS).  User space maps this array and reads both without a
 * system call at every snapshot: while T_NEW_GROUPS stays the same it knows
 * every group id, and reads the groups one by one instead of walking the table.
 * User space writes T_SHOWN_UNTIL: the clock up to which its last read extended
 * the open stays (see missed_switch_in()).
 */
#define T_DROPPED 0
#define T_NEW_GROUPS 1
#define T_SHOWN_UNTIL 2
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} tallies SEC(".maps");

/*
 * The clock of each CPU's last known event (a switch, or a tick that showed what
 * it runs; 0: none yet).  A switch the kernel made without the sched_switch
 * tracepoint firing (seen on some kernels for every tracer, eBPF included: a task
 * is switched out that no switch put in) happened after it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} cpu_last SEC(".maps");

static __always_inline void tally(__u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(&tallies, &slot);

	if (c)
		__sync_fetch_and_add(c, 1);
}

static __always_inline int classify(const struct rs_group *g)
{
	if (g->held)
		return D_NONE;
	if (g->n_unknown > 0)
		return D_LOST;
	if (g->n_blocked <= 0) {
		if (g->n_runnable <= 0)
			return g->n_running > 0 ? D_FULL_RUN : D_NONE;
		return g->n_running > 0 ? D_CONCURRENCY_HAZARD : D_FULL_CONTENTION;
	}
	if (g->n_running > 0)
		return g->n_runnable > 0 ? D_CONCURRENCY_HAZARD : D_PARTIAL_RUN;
	return g->n_runnable > 0 ? D_PARTIAL_CONTENTION : D_BLOCKED;
}

static __always_inline void add_count(struct rs_group *g, __u32 state, int delta)
{
	if (state == M_RUNNING)
		g->n_running += delta;
	else if (state == M_RUNNABLE)
		g->n_runnable += delta;
	else if (state == M_BLOCKED)
		g->n_blocked += delta;
	else if (state == M_UNKNOWN)
		g->n_unknown += delta;
}

static __always_inline void add_group_ns(struct rs_group *g, int state, __u64 delta)
{
	if (state >= 0 && state < D_NSTATES)
		g->ns[state] += delta;
}

/* The group's state from its counts, changed at now if it differs; the lock is held. */
static __always_inline void reclassify(struct rs_group *g, __u64 now)
{
	int next = classify(g);

	if (next == g->state)
		return;
	if (g->state >= 0)
		add_group_ns(g, g->state, now - g->since);
	else if (g->first_ns == 0)
		g->first_ns = now;
	g->state = next;
	g->since = now;
	g->changes += 1;
}

/* Move member m to new_state (M_UNSEEN = leaves the group); the group lock is held. */
static __always_inline void move(struct rs_group *g, struct rs_member *m, __u32 new_state,
				 __u64 now)
{
	__u32 old = m->state;

	if (old == new_state)
		return;
	/* the clock was read before the lock: another CPU may have moved on meanwhile */
	if (now < g->since)
		now = g->since;
	if (now < g->mlast)
		now = g->mlast;
	if (now < m->since)
		now = m->since;
	if (g->mlast) {
		__u64 delta = now - g->mlast;

		if (g->n_running > 0)
			g->member_ns[0] += delta * g->n_running;
		if (g->n_runnable > 0)
			g->member_ns[1] += delta * g->n_runnable;
		if (g->n_blocked > 0)
			g->member_ns[2] += delta * g->n_blocked;
	}
	g->mlast = now;
	if (old != M_UNSEEN) {
		if (old == M_RUNNING)
			m->ns[0] += now - m->since;
		else if (old == M_RUNNABLE)
			m->ns[1] += now - m->since;
		else if (old == M_BLOCKED)
			m->ns[2] += now - m->since;
		else
			m->ns[3] += now - m->since;
		add_count(g, old, -1);
	} else {
		g->members += 1;
	}
	if (new_state != M_UNSEEN)
		add_count(g, new_state, 1);
	else if (g->members > 0)
		g->members -= 1;
	m->state = new_state;
	m->since = now;
	reclassify(g, now);
}

/* Whether member m is counted and believed not running (runnable, blocked, unknown). */
static __always_inline int believed_elsewhere(const struct rs_member *m)
{
	return m->state != M_RUNNING && m->state != M_UNSEEN;
}

/*
 * Whether a switch-out of member m, its clock read at `now`, is stale; the group
 * lock is held.
 *
 * A handler reads the clock before it takes the lock, and a vCPU the hypervisor
 * preempts in between applies its event late.  A task switched out on one CPU
 * and in on another then has its switch-in applied first (a no-op: it was
 * running) and its switch-out after it, and would stay runnable, while it runs,
 * until its next event: hundreds of ms for a task spinning alone on a CPU.  A
 * task's switches alternate in real time, and a switch-in on another CPU waits
 * until the task is off the first one, whose switch-out read the clock before:
 * so a switch-out whose clock is older than an applied switch-in's belongs to an
 * earlier run, and is stale.  (Only that pair: a wakeup may read the clock after
 * the switch-in it allowed, so other events are not ordered by their clocks.)
 */
static __always_inline int stale_switch_out(const struct rs_member *m, __u64 now)
{
	return now < m->last_in;
}

/*
 * Member m was running at `now` although believed runnable or blocked: its
 * switch-in was not recorded.  It happened after `from` (the CPU's last known
 * event), so the member's stay from then on, and its group's, are undecidable:
 * counted as unknown and lost, the group's miss counted, and the member runs
 * from now.  A member of unknown state (never seen since it was counted) just
 * runs from now.  The lock is held.
 *
 * The caller raises `from` to what user space has already shown (see
 * later_than_shown()): figures handed out never change, and the part of the
 * span before them stays in the state believed then.
 */
static __always_inline void missed_switch_in(struct rs_group *g, struct rs_member *m,
					     __u64 from, __u64 now)
{
	__u32 old = m->state;

	if (!believed_elsewhere(m))
		return;
	if (old == M_UNKNOWN) {
		move(g, m, M_RUNNING, now);
		return;
	}
	if (from < m->since)
		from = m->since;
	if (from < g->since)
		from = g->since;
	if (now < from)
		now = from;
	if (old == M_RUNNABLE)
		m->ns[1] += from - m->since;
	else if (old == M_BLOCKED)
		m->ns[2] += from - m->since;
	else
		m->ns[3] += from - m->since;
	m->since = from;
	if (g->state >= 0) {
		add_group_ns(g, g->state, from - g->since);
		add_group_ns(g, D_LOST, now - from);
		g->since = now;
	}
	/* the stay since `from` counts as unknown when the member moves on */
	add_count(g, old, -1);
	add_count(g, M_UNKNOWN, 1);
	m->state = M_UNKNOWN;
	g->missed += 1;
	move(g, m, M_RUNNING, now);
}

/* `from`, or the clock up to which user space's last read extended the open stays
 * if that is later; looked up before a lock is taken (no helper may run under it) */
static __always_inline __u64 later_than_shown(__u64 from)
{
	__u32 slot = T_SHOWN_UNTIL;
	__u64 *shown = bpf_map_lookup_elem(&tallies, &slot);

	return shown && *shown > from ? *shown : from;
}

/* The task `pid` runs on this CPU at `now` (a switch-out or a tick shows it): if it is
 * a member believed elsewhere, its switch-in was missed after `from`. */
static __always_inline void seen_running(__u32 pid, __u64 from, __u64 now)
{
	struct rs_member *m;
	struct rs_group *g;

	if (pid == 0)
		return;
	m = bpf_map_lookup_elem(&members, &pid);
	/* read without the lock to skip the common case; decided under it */
	if (!m || !believed_elsewhere(m))
		return;
	g = bpf_map_lookup_elem(&groups, &m->group);
	if (!g)
		return;
	from = later_than_shown(from);
	bpf_spin_lock(&g->lock);
	if (!stale_switch_out(m, now))
		missed_switch_in(g, m, from, now);
	bpf_spin_unlock(&g->lock);
}

/* This CPU's last known event's clock (0: none yet); `now` becomes it. */
static __always_inline __u64 cpu_last_event(__u64 now)
{
	__u32 zero = 0;
	__u64 *last = bpf_map_lookup_elem(&cpu_last, &zero);
	__u64 before;

	if (!last)
		return 0;
	before = *last;
	*last = now;
	return before;
}

/* Member m left this CPU at `now`, into `after`; a member believed elsewhere was
 * switched in unseen after `from` (the CPU's previous known event).  Lock held. */
static __always_inline void switched_out(struct rs_group *g, struct rs_member *m, __u32 after,
					 __u64 from, __u64 now)
{
	if (stale_switch_out(m, now))
		return;
	missed_switch_in(g, m, from, now);
	move(g, m, after, now);
}

/* Member m was switched in at `now`.  Lock held. */
static __always_inline void switched_in(struct rs_group *g, struct rs_member *m, __u64 now)
{
	if (now > m->last_in)
		m->last_in = now;
	move(g, m, M_RUNNING, now);
}

/* A wakeup of task pid: a member not running or waiting becomes runnable. */
static __always_inline void woken(__u32 pid)
{
	struct rs_member *m;
	struct rs_group *g;
	__u64 now;

	if (pid == 0)
		return;
	m = bpf_map_lookup_elem(&members, &pid);
	if (!m)
		return;
	g = bpf_map_lookup_elem(&groups, &m->group);
	if (!g)
		return;
	now = bpf_ktime_get_ns();
	bpf_spin_lock(&g->lock);
	if (m->state == M_BLOCKED || m->state == M_UNSEEN || m->state == M_UNKNOWN)
		move(g, m, M_RUNNABLE, now);
	bpf_spin_unlock(&g->lock);
}

/*
 * Each member looked up once.  A switch between two members of one group moves
 * both under one lock, so no other CPU's event meets the group with one of them
 * moved and not the other.  prev leaving proves it ran here: a member believed
 * elsewhere was switched in unseen, after this CPU's last known event.
 */
SEC("tp_btf/sched_switch")
int BPF_PROG(rs_switch, _Bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u32 prev_pid = BPF_CORE_READ(prev, pid);
	__u32 next_pid = BPF_CORE_READ(next, pid);
	__u64 now = bpf_ktime_get_ns();
	__u64 from = cpu_last_event(now);
	struct rs_member *pm = NULL, *nm = NULL;
	struct rs_group *g;
	__u32 after;

	if (prev_pid)
		pm = bpf_map_lookup_elem(&members, &prev_pid);
	if (next_pid)
		nm = bpf_map_lookup_elem(&members, &next_pid);
	/* read without the lock: only a member not believed running can reveal a miss */
	if (pm && believed_elsewhere(pm))
		from = later_than_shown(from);
	if (prev_state & RS_TASK_DEAD)
		after = M_UNSEEN;
	else if (preempt || prev_state == 0)
		after = M_RUNNABLE;
	else
		after = M_BLOCKED;
	if (pm && nm && pm->group == nm->group) {
		g = bpf_map_lookup_elem(&groups, &pm->group);
		if (g) {
			bpf_spin_lock(&g->lock);
			switched_out(g, pm, after, from, now);
			switched_in(g, nm, now);
			bpf_spin_unlock(&g->lock);
		}
	} else {
		if (pm) {
			g = bpf_map_lookup_elem(&groups, &pm->group);
			if (g) {
				bpf_spin_lock(&g->lock);
				switched_out(g, pm, after, from, now);
				bpf_spin_unlock(&g->lock);
			}
		}
		if (nm) {
			g = bpf_map_lookup_elem(&groups, &nm->group);
			if (g) {
				bpf_spin_lock(&g->lock);
				switched_in(g, nm, now);
				bpf_spin_unlock(&g->lock);
			}
		}
	}
	if (pm && after == M_UNSEEN)
		bpf_map_delete_elem(&members, &prev_pid);
	return 0;
}

/*
 * A timer interrupt (the scheduler tick among them) shows which task this CPU
 * runs: a member switched in unseen is found within a tick, not at its next
 * switch-out, which for a task spinning alone on a CPU may be seconds away.
 */
SEC("tp_btf/hrtimer_expire_entry")
int BPF_PROG(rs_tick)
{
	__u32 pid = (__u32)bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_ns();

	seen_running(pid, cpu_last_event(now), now);
	return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(rs_wakeup, struct task_struct *p)
{
	woken(BPF_CORE_READ(p, pid));
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(rs_wakeup_new, struct task_struct *p)
{
	woken(BPF_CORE_READ(p, pid));
	return 0;
}

static __always_inline __u32 child_group(__u32 parent_group, struct task_struct *parent,
					 struct task_struct *child)
{
	__u32 slot = 0;
	__u64 *mode = bpf_map_lookup_elem(&config, &slot);
	__u32 child_tgid = BPF_CORE_READ(child, tgid);

	if (!mode || *mode == FORK_JOINS_PARENT)
		return parent_group;
	if (*mode == FORK_NEW_THREAD_GROUP)
		return BPF_CORE_READ(child, pid);
	if (child_tgid != (__u32)BPF_CORE_READ(parent, tgid))
		return child_tgid;
	return parent_group;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(rs_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 parent_pid = BPF_CORE_READ(parent, pid);
	__u32 child_pid = BPF_CORE_READ(child, pid);
	struct rs_member *pm = bpf_map_lookup_elem(&members, &parent_pid);
	struct rs_member fresh = {};
	struct rs_group empty = {};

	if (!pm)
		return 0;
	fresh.group = child_group(pm->group, parent, child);
	fresh.state = M_UNSEEN;
	if (fresh.group != pm->group) {
		empty.state = D_NONE;
		if (bpf_map_update_elem(&groups, &fresh.group, &empty, BPF_NOEXIST) == 0)
			tally(T_NEW_GROUPS);
	}
	if (bpf_map_update_elem(&members, &child_pid, &fresh, BPF_NOEXIST) == 0)
		return 0;
	tally(T_DROPPED);
	return 0;
}

/* Count each member not seen yet from its exact scheduling state now. */
SEC("iter/task")
int rs_init_members(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct rs_member *m;
	struct rs_group *g;
	__u32 pid, state;
	__u64 now;

	if (!task)
		return 0;
	pid = task->pid;
	m = bpf_map_lookup_elem(&members, &pid);
	if (!m || m->state != M_UNSEEN || (task->__state & RS_TASK_NEW))
		return 0;
	g = bpf_map_lookup_elem(&groups, &m->group);
	if (!g)
		return 0;
	if (task->on_cpu)
		state = M_RUNNING;
	else if (task->on_rq && !(bpf_core_field_exists(task->se.sched_delayed) &&
				  task->se.sched_delayed))
		state = M_RUNNABLE;
	else
		state = M_BLOCKED;
	now = bpf_ktime_get_ns();
	bpf_spin_lock(&g->lock);
	if (m->state == M_UNSEEN)
		move(g, m, state, now);
	bpf_spin_unlock(&g->lock);
	return 0;
}

/*
 * Count a member the iterator could not visit, from what user space knows
 * (/proc: sleeping, or running/runnable = unknown until its next event).
 * Run by user space with BPF_PROG_TEST_RUN; only a member not counted yet moves.
 */
SEC("syscall")
int rs_set_state(struct rs_state_arg *arg)
{
	__u32 tid = arg->tid;
	__u32 state = arg->state;
	struct rs_member *m;
	struct rs_group *g;
	__u64 now;

	if (state != M_BLOCKED && state != M_UNKNOWN)
		return 1;
	m = bpf_map_lookup_elem(&members, &tid);
	if (!m)
		return 1;
	g = bpf_map_lookup_elem(&groups, &m->group);
	if (!g)
		return 1;
	now = bpf_ktime_get_ns();
	bpf_spin_lock(&g->lock);
	if (m->state == M_UNSEEN)
		move(g, m, state, now);
	bpf_spin_unlock(&g->lock);
	return 0;
}

/*
 * Release a held group: its first members are all counted, so its state from
 * now on is that of all of them.  Run by user space with BPF_PROG_TEST_RUN.
 */
SEC("syscall")
int rs_release(struct rs_release_arg *arg)
{
	__u32 group = arg->group;
	struct rs_group *g;
	__u64 now;

	g = bpf_map_lookup_elem(&groups, &group);
	if (!g)
		return 1;
	now = bpf_ktime_get_ns();
	bpf_spin_lock(&g->lock);
	if (g->held) {
		g->held = 0;
		reclassify(g, now);
	}
	bpf_spin_unlock(&g->lock);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
