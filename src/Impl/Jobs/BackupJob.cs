using Verified.Impl.Graph;
using Verified.Impl.IO;

namespace Verified.Impl.Jobs;

/// <summary>
/// A backup job (block/backup.c): its copy-before-write filter keeps the point-in-time image by copying
/// old data to the target before guest writes land; the job copies every cluster the filter has not
/// (sync=full, and sync=top, which Verified treats as full: see spec/jobs.md); sync=none copies nothing
/// and waits to be cancelled (fleecing).
/// </summary>
public sealed class BackupJob : BlockJob
{
    private long nextCluster;

    internal BackupJob(string id, long seq, bool autoFinalize, bool autoDismiss, long speed, string sync, Action<JobEvent> emit)
        : base(id, seq, autoFinalize, autoDismiss, speed, emit)
    {
        Sync = sync;
    }

    /// <inheritdoc/>
    public override string Type => "backup";

    /// <summary>The sync mode (full, top, none, bitmap).</summary>
    public string Sync { get; }

    private CopyBeforeWriteDriver Cbw => (CopyBeforeWriteDriver)(Filter ?? throw new InvalidOperationException($"job '{Id}' has no filter")).Driver;

    /// <inheritdoc/>
    internal override bool HasWork => Sync != "none" && Filter is not null;

    /// <inheritdoc/>
    internal override bool Work()
    {
        if (!HasWork) return false;
        var cbw = Cbw;
        // Bounded by the cluster count: each pass copies (or finds copied) one cluster.
        bool mutant = Filter!.Mutation == Engine.EngineMutation.BackupCopiesCurrentData;
        for (; nextCluster < cbw.ClusterCount; nextCluster++)
        {
            int err = mutant ? cbw.CopyClusterAgainForMutant(nextCluster) : cbw.CopyClusterForJobAsync(nextCluster).AsTask().GetAwaiter().GetResult();
            if (err != 0)
            {
                Error = Errnos.Strerror(err);
                return true;
            }
            Offset = Math.Min(Len, (nextCluster + 1) * cbw.ClusterSize);
        }
        return true;
    }
}
