#!/usr/bin/env bash
# A one-node SLURM for tests/test_slurm.py: Debian's slurm-wlm 22.05 and munge, no cgroups (proctrack/linuxproc,
# task/none), no accounting, this machine's CPUs and 8 GB of its memory as one node in one partition. Installs the
# packages where they are missing; exits non-zero (the test then skips, saying why) where SLURM does not come up.
set -uo pipefail
if ! command -v slurmctld >/dev/null; then
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd \
        slurm-client munge >/dev/null || exit 1
fi
host="$(hostname -s)"
cpus="$(nproc)"
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /etc/munge
[[ -s /etc/munge/munge.key ]] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged || exit 1
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
NodeName=$host CPUs=$cpus RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld || exit 1
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd || exit 1
for _ in $(seq 30); do
    sinfo -h -o %T 2>/dev/null | grep -qx idle && { echo "SLURM up: one node ($host, $cpus CPUs)"; exit 0; }
    scontrol update nodename="$host" state=resume >/dev/null 2>&1
    sleep 1
done
echo "SLURM did not come up: $(sinfo -h 2>&1 | head -1)" >&2
exit 1
