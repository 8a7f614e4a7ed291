using System.Buffers;
using System.Globalization;
using Verified.Impl.Graph;
using Verified.Vocabulary;

namespace Verified.Impl.IO;

/// <summary>
/// The copy-before-write filter (block/copy-before-write.c with block/block-copy.c and block/reqlist.c):
/// before a guest write, write-zeroes or discard lands on <c>file</c> (the source), the old content of
/// every affected cluster not yet copied is read from the source and written to <c>target</c> at the same
/// offset; then the guest request proceeds. Each cluster is copied at most once. The target thus holds,
/// together with the untouched part of the source, the point-in-time image that
/// <see cref="ReadSnapshotAsync"/> (and the snapshot-access driver over this node) reads.
/// </summary>
/// <remarks>
/// <para>
/// Cluster size: <see cref="DefaultClusterSize"/> (64 KiB, QEMU's BLOCK_COPY_CLUSTER_SIZE_DEFAULT), or the
/// target's cluster size when its driver implements <see cref="IClusterSized"/> and it is larger, as
/// <c>block_copy_calculate_cluster_size</c> does; Verified's schema has no <c>min-cluster-size</c>.
/// </para>
/// <para>
/// Three bitmaps per cluster, as QEMU keeps: <em>to copy</em> (block-copy's dirty bitmap), <em>done</em>
/// (copied by a copy-before-write operation, so snapshot reads go to the target), and <em>access</em>
/// (readable through the snapshot; cleared by a snapshot discard). Option <c>bitmap</c> would restrict
/// <em>to copy</em> and <em>access</em> to the bitmap's dirty clusters; Verified does not track bitmap
/// contents yet, so a given bitmap makes every cluster a candidate, as if it were fully dirty.
/// </para>
/// <para>
/// Concurrency: a cluster being copied is in flight; a second writer to it waits for that copy and
/// re-checks (copying again if it failed). A snapshot read from the source registers its range as
/// frozen; a guest write, after its copy, waits until no frozen read overlaps it, so a snapshot read
/// never sees new data, and a snapshot read after the copy goes to the target.
/// </para>
/// <para>
/// Errors: with <c>on-cbw-error</c> <c>break-guest-write</c> (the default) a failed copy fails the guest
/// request with the copy's errno and the clusters stay to be copied. With <c>break-snapshot</c> the guest
/// request proceeds, the snapshot becomes invalid, every later snapshot read fails with EACCES, and no
/// further copies are made. <c>cbw-timeout</c> (seconds, on the injected clock; 0 = none) fails a copy that
/// takes longer with ETIMEDOUT under the same policy; the timed-out copy itself runs on in the background.
/// QEMU 7.2 keeps the timeout in a 32-bit nanosecond field, so timeouts above 4 s wrap there; Verified
/// does not reproduce that bug (fixed upstream later).
/// </para>
/// <para>The option <c>x-perm-scheme</c> is a permission rule (PermRules) and has no I/O effect.</para>
/// </remarks>
[BlockDriverName("copy-before-write")]
public sealed class CopyBeforeWriteDriver : BlockDriver, IHiddenBitmaps
{
    /// <summary>QEMU's BLOCK_COPY_CLUSTER_SIZE_DEFAULT.</summary>
    public const long DefaultClusterSize = 64 * 1024;

    /// <summary>EACCES: what snapshot reads of an invalid snapshot or a discarded range fail with.</summary>
    public const int EACCES = 13;

    /// <summary>The largest single copy (QEMU's BLOCK_COPY_MAX_BUFFER).</summary>
    private const long MaxCopyChunk = 1 << 20;

    private readonly object sync = new();
    private readonly Dictionary<long, Task> inflight = [];
    private readonly List<FrozenRead> frozen = [];
    private ClusterBitmap toCopy = new(0, false);
    private ClusterBitmap done = new(0, false);
    private ClusterBitmap access = new(0, false);
    private long clusterSize = DefaultClusterSize;
    private long sourceLength;
    private int snapshotError;
    private bool breakSnapshot;
    private long timeoutNs;
    private IClock clock = SystemClock.Instance;
    private bool writeFirst;
    private long copyStamp, doneStamp, accessStamp;

    /// <summary>The copy granularity.</summary>
    public long ClusterSize => clusterSize;

    /// <summary>The errno of the copy failure that invalidated the snapshot (break-snapshot), or 0.</summary>
    public int SnapshotError
    {
        get
        {
            lock (sync) return snapshotError;
        }
    }

    /// <summary>How many clusters copy-before-write operations have copied to the target.</summary>
    public long CopiedClusters
    {
        get
        {
            lock (sync) return done.PopCount();
        }
    }

    /// <inheritdoc/>
    protected internal override QmpError? Open(EngineServices services)
    {
        ArgumentNullException.ThrowIfNull(services);
        clock = services.Clock;
        writeFirst = services.Mutation == Engine.EngineMutation.WriteBeforeCopy;
        if (Primary is null) return QmpError.Generic("A block device must be specified for \"file\"");
        var target = Node.Child("target");
        if (target is null) return QmpError.Generic("A block device must be specified for \"target\"");
        breakSnapshot = Node.Str("on-cbw-error") == "break-snapshot";
        if (Node.Options.TryGetValue("cbw-timeout", out var t))
        {
            long seconds = long.Parse(t, CultureInfo.InvariantCulture);
            if (seconds < 0) return QmpError.Generic("Parameter 'cbw-timeout' expects uint32_t");
            timeoutNs = seconds * 1_000_000_000L;
        }
        if (target.Node.Driver is IClusterSized cs && cs.ClusterSize > clusterSize) clusterSize = cs.ClusterSize;
        sourceLength = Primary.Node.Length;
        long clusters = (sourceLength + clusterSize - 1) / clusterSize;
        toCopy = new ClusterBitmap(clusters, true);
        access = new ClusterBitmap(clusters, true);
        done = new ClusterBitmap(clusters, false);
        // QEMU creates them in this order: block-copy's bitmap on the source, then done and access on the filter.
        (copyStamp, doneStamp, accessStamp) = (BitmapStamps.Next(), BitmapStamps.Next(), BitmapStamps.Next());
        return null;
    }

    /// <inheritdoc/>
    public IEnumerable<HiddenBitmap> HiddenBitmaps
    {
        get
        {
            if (Primary is not { } source) return [];
            lock (sync)
            {
                return
                [
                    new(source.Node, clusterSize, toCopy.PopCount() * clusterSize, copyStamp),
                    new(Node, clusterSize, done.PopCount() * clusterSize, doneStamp),
                    new(Node, clusterSize, access.PopCount() * clusterSize, accessStamp),
                ];
            }
        }
    }

    private BlockNode Source => Primary?.Node ?? throw new BlockIOException(Errnos.EIO, $"'{Node.Name}' has no file child");

    private BlockNode Target => Node.Child("target")?.Node ?? throw new BlockIOException(Errnos.EIO, $"'{Node.Name}' has no target child");

    /// <inheritdoc/>
    public override long Length => Primary?.Node.Length ?? 0;

    /// <inheritdoc/>
    public override ValueTask ReadAsync(long offset, Memory<byte> buffer) => Source.ReadAsync(offset, buffer);

    /// <inheritdoc/>
    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags)
    {
        if (writeFirst) return WriteThenCopyAsync(offset, data, flags);
        var before = BeforeWriteAsync(offset, data.Length);
        return before.IsCompletedSuccessfully ? Source.WriteAsync(offset, data, flags) : WriteAfterAsync(before, offset, data, flags);
    }

    /// <inheritdoc/>
    public override ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags)
    {
        var before = BeforeWriteAsync(offset, length);
        return before.IsCompletedSuccessfully ? Source.WriteZeroesAsync(offset, length, flags) : WriteZeroesAfterAsync(before, offset, length, flags);
    }

    /// <inheritdoc/>
    public override ValueTask DiscardAsync(long offset, long length)
    {
        var before = BeforeWriteAsync(offset, length);
        return before.IsCompletedSuccessfully ? Source.DiscardAsync(offset, length) : DiscardAfterAsync(before, offset, length);
    }

    private async ValueTask WriteThenCopyAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags)
    {
        await Source.WriteAsync(offset, data, flags).ConfigureAwait(false);
        await BeforeWriteAsync(offset, data.Length).ConfigureAwait(false);
    }

    private async ValueTask WriteAfterAsync(ValueTask before, long offset, ReadOnlyMemory<byte> data, WriteFlags flags)
    {
        await before.ConfigureAwait(false);
        await Source.WriteAsync(offset, data, flags).ConfigureAwait(false);
    }

    private async ValueTask WriteZeroesAfterAsync(ValueTask before, long offset, long length, WriteFlags flags)
    {
        await before.ConfigureAwait(false);
        await Source.WriteZeroesAsync(offset, length, flags).ConfigureAwait(false);
    }

    private async ValueTask DiscardAfterAsync(ValueTask before, long offset, long length)
    {
        await before.ConfigureAwait(false);
        await Source.DiscardAsync(offset, length).ConfigureAwait(false);
    }

    private (long First, long End) Clusters(long offset, long length)
    {
        long first = offset / clusterSize;
        long end = Math.Min((offset + length + clusterSize - 1) / clusterSize, toCopy.Count);
        return (Math.Min(first, end), end);
    }

    /// <summary>
    /// <c>cbw_do_copy_before_write</c>: copies the clusters of the range that still need it, then waits
    /// for overlapping snapshot reads from the source. Completes synchronously when nothing is to do.
    /// </summary>
    private ValueTask BeforeWriteAsync(long offset, long length)
    {
        if (length <= 0) return ValueTask.CompletedTask;
        var (first, end) = Clusters(offset, length);
        lock (sync)
        {
            if (snapshotError != 0) return ValueTask.CompletedTask;
            bool quiet = true;
            for (long c = first; c < end && quiet; c++) quiet = !toCopy[c] && !inflight.ContainsKey(c);
            if (quiet && FrozenOverlap(first * clusterSize, end * clusterSize) is null)
            {
                done.Fill(first, end, true);
                return ValueTask.CompletedTask;
            }
        }
        return CopyThenWaitAsync(first, end);
    }

    private async ValueTask CopyThenWaitAsync(long first, long end)
    {
        int err = await CopyWithTimeoutAsync(first, end).ConfigureAwait(false);
        if (err != 0 && !breakSnapshot) throw new BlockIOException(err, $"copy-before-write failed: {ErrnoText(err)}");
        lock (sync)
        {
            if (err != 0)
            {
                if (snapshotError == 0) snapshotError = err;
            }
            else done.Fill(first, end, true);
        }
        long start = first * clusterSize, stop = end * clusterSize;
        while (true)
        {
            Task? wait;
            lock (sync) wait = FrozenOverlap(start, stop);
            if (wait is null) return;
            await wait.ConfigureAwait(false);
        }
    }

    private Task? FrozenOverlap(long start, long end)
    {
        foreach (var f in frozen)
        {
            if (f.Start < end && start < f.End) return f.Done.Task;
        }
        return null;
    }

    private async ValueTask<int> CopyWithTimeoutAsync(long first, long end)
    {
        var copy = CopyErrnoAsync(first, end);
        if (timeoutNs == 0 || copy.IsCompleted) return await copy.ConfigureAwait(false);
        using var cts = new CancellationTokenSource();
        var timer = clock.WaitUntilAsync(clock.NowNs + timeoutNs, cts.Token).AsTask();
        var winner = await Task.WhenAny(copy, timer).ConfigureAwait(false);
        if (winner == copy)
        {
            await cts.CancelAsync().ConfigureAwait(false);
            return await copy.ConfigureAwait(false);
        }
        // The copy goes on in the background and settles its clusters when it ends; it never throws.
        return Errnos.ETIMEDOUT;
    }

    /// <summary>
    /// <c>block_copy</c>: claims the clusters of [<paramref name="first"/>, <paramref name="end"/>) that are
    /// to be copied and nobody copies now, copies them, and waits for the ones others are copying,
    /// rescanning after each wait (a failed copy leaves its clusters to be copied again). Returns 0 or an errno.
    /// </summary>
    private async Task<int> CopyErrnoAsync(long first, long end) => (await CopyClustersAsync(first, end).ConfigureAwait(false)).Errno;

    private async Task<CopyResult> CopyClustersAsync(long first, long end)
    {
        while (true)
        {
            Task? other = null;
            var claimed = new List<long>();
            TaskCompletionSource? mine = null;
            lock (sync)
            {
                for (long c = first; c < end; c++)
                {
                    if (inflight.TryGetValue(c, out var t))
                    {
                        other ??= t;
                        continue;
                    }
                    if (!toCopy[c]) continue;
                    toCopy[c] = false;
                    claimed.Add(c);
                }
                if (claimed.Count > 0)
                {
                    mine = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    foreach (var c in claimed) inflight[c] = mine.Task;
                }
            }
            if (mine is not null)
            {
                var r = await CopyRunsAsync(claimed, mine).ConfigureAwait(false);
                if (r.Errno != 0) return r;
            }
            if (other is null) return default;
            await other.ConfigureAwait(false);
        }
    }

    /// <summary>Copies claimed clusters run by run; on failure, the clusters not copied are to be copied again.</summary>
    private async Task<CopyResult> CopyRunsAsync(List<long> claimed, TaskCompletionSource mine)
    {
        int copied = 0, err = 0;
        bool onRead = false;
        try
        {
            var source = Source;
            var target = Target;
            for (int i = 0; i < claimed.Count;)
            {
                int j = i + 1;
                while (j < claimed.Count && claimed[j] == claimed[j - 1] + 1) j++;
                long start = claimed[i] * clusterSize;
                long stop = Math.Min((claimed[j - 1] + 1) * clusterSize, sourceLength);
                await CopyRangeAsync(source, target, start, stop).ConfigureAwait(false);
                copied = j;
                i = j;
            }
        }
        catch (BlockIOException e)
        {
            (err, onRead) = (e.Errno, e.OnRead);
        }
        catch (IOException)
        {
            err = Errnos.EIO;
        }
        finally
        {
            lock (sync)
            {
                for (int k = 0; k < claimed.Count; k++)
                {
                    inflight.Remove(claimed[k]);
                    if (k >= copied) toCopy[claimed[k]] = true;
                }
            }
            // Waiters rescan after this: the bookkeeping above is already visible to them.
            mine.TrySetResult();
        }
        return new CopyResult(err, onRead);
    }

    /// <summary>A copy's outcome: 0 or an errno, and whether it failed reading the source (else writing the target).</summary>
    internal readonly record struct CopyResult(int Errno, bool Read);

    private static async ValueTask CopyRangeAsync(BlockNode source, BlockNode target, long start, long stop)
    {
        int chunk = (int)Math.Min(MaxCopyChunk, stop - start);
        var buffer = ArrayPool<byte>.Shared.Rent(chunk);
        try
        {
            for (long pos = start; pos < stop; pos += chunk)
            {
                int n = (int)Math.Min(chunk, stop - pos);
                var mem = buffer.AsMemory(0, n);
                try
                {
                    await source.ReadAsync(pos, mem).ConfigureAwait(false);
                }
                catch (BlockIOException e)
                {
                    throw new BlockIOException(e.Errno, e.Message) { OnRead = true };
                }
                await target.WriteAsync(pos, mem).ConfigureAwait(false);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// The point-in-time content (<c>cbw_co_preadv_snapshot</c>): clusters already copied are read from the
    /// target, the others from the source while their range is held frozen, so a concurrent guest write
    /// copies them first and lands only after this read. Fails with EACCES when the snapshot is invalid
    /// (break-snapshot after a failed copy) or a cluster of the range was discarded through the snapshot.
    /// </summary>
    public async ValueTask ReadSnapshotAsync(long offset, Memory<byte> buffer)
    {
        if (offset < 0 || offset > Length - buffer.Length)
            throw new BlockIOException(Errnos.EINVAL, $"request [{offset}, +{buffer.Length}) outside node '{Node.Name}' of {Length} bytes");
        long pos = offset, stop = offset + buffer.Length;
        while (pos < stop)
        {
            FrozenRead? hold = null;
            bool fromTarget;
            long n;
            lock (sync)
            {
                if (snapshotError != 0) throw new BlockIOException(EACCES, "Permission denied");
                var (first, end) = Clusters(pos, stop - pos);
                for (long c = first; c < end; c++)
                {
                    if (!access[c]) throw new BlockIOException(EACCES, "Permission denied");
                }
                fromTarget = first < end && done[first];
                long c2 = first + 1;
                while (c2 < end && done[c2] == fromTarget) c2++;
                n = Math.Min(c2 * clusterSize, stop) - pos;
                if (n <= 0) n = stop - pos;
                if (!fromTarget)
                {
                    hold = new FrozenRead(pos, pos + n);
                    frozen.Add(hold);
                }
            }
            try
            {
                var slice = buffer.Slice((int)(pos - offset), (int)n);
                await (fromTarget ? Target : Source).ReadAsync(pos, slice).ConfigureAwait(false);
            }
            finally
            {
                if (hold is not null)
                {
                    lock (sync) frozen.Remove(hold);
                    hold.Done.TrySetResult();
                }
            }
            pos += n;
        }
    }

    /// <summary>
    /// <c>cbw_co_pdiscard_snapshot</c>: the snapshot user no longer needs the whole clusters of the range;
    /// they become unreadable through the snapshot (EACCES), are no longer copied, and are discarded on the target.
    /// </summary>
    public async ValueTask DiscardSnapshotAsync(long offset, long length)
    {
        long start = (offset + clusterSize - 1) / clusterSize;
        long end = Math.Min((offset + length) / clusterSize, toCopy.Count);
        if (end <= start) return;
        lock (sync)
        {
            access.Fill(start, end, false);
            toCopy.Fill(start, end, false);
        }
        var target = Target;
        long from = start * clusterSize, to = Math.Min(end * clusterSize, target.Length);
        if (to > from) await target.DiscardAsync(from, to - from).ConfigureAwait(false);
    }

    private static string ErrnoText(int errno) => Errnos.Strerror(errno);

    /// <summary>The number of clusters of the source (the job's unit of work).</summary>
    public long ClusterCount
    {
        get
        {
            lock (sync) return toCopy.Count;
        }
    }

    /// <summary>The <c>BackupCopiesCurrentData</c> mutant's copy: the cluster as the source holds it now, copied or not.</summary>
    internal int CopyClusterAgainForMutant(long cluster)
    {
        lock (sync) toCopy[cluster] = true;
        return CopyErrnoAsync(cluster, cluster + 1).GetAwaiter().GetResult();
    }

    /// <summary>
    /// The backup job's copy of one cluster (backup.c's loop over <c>block_copy</c>): copied unless the
    /// filter already did (or is doing) it, each cluster at most once. Returns 0 or an errno.
    /// </summary>
    internal ValueTask<CopyResult> CopyClusterForJobAsync(long cluster)
    {
        lock (sync)
        {
            if (cluster < 0 || cluster >= toCopy.Count) throw new ArgumentOutOfRangeException(nameof(cluster));
            if (!toCopy[cluster] && !inflight.ContainsKey(cluster)) return ValueTask.FromResult(default(CopyResult));
        }
        return new ValueTask<CopyResult>(CopyClustersAsync(cluster, cluster + 1));
    }

    /// <summary>Whether <paramref name="cluster"/> is still to be copied (neither copied nor skipped).</summary>
    internal bool ToCopy(long cluster)
    {
        lock (sync) return toCopy[cluster];
    }

    /// <summary>
    /// block_copy_reset: the job will not copy <paramref name="cluster"/> and guest writes over it copy nothing
    /// (sync=top's unallocated clusters, sync=bitmap's clean ones). Done when the job starts, before any write.
    /// </summary>
    internal void Skip(long cluster)
    {
        lock (sync) toCopy[cluster] = false;
    }

    private sealed class FrozenRead(long start, long end)
    {
        public long Start { get; } = start;
        public long End { get; } = end;
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
