using System.Numerics;
using Microsoft.Win32.SafeHandles;
using Verified.Impl.Formats;
using Verified.Impl.Graph;
using Verified.Impl.IO;
using Verified.Impl.Jobs;
using Verified.Vocabulary;
using Verified.Vocabulary.Jobs;

namespace Verified.Impl.Engine;

/// <summary>
/// <c>blockdev-create</c> as QEMU 7.2 runs it (block/create.c): the driver must have a create function,
/// then the job is created (id checks) and started at once. Its coroutine runs within the command until
/// its first wait for I/O, so a failure before that (a bad option, a missing node, a permission
/// conflict, a file that cannot be created) ends the job before the reply; the rest runs after the reply,
/// when the jobs run. The job never dismisses itself: the client must job-dismiss it.
/// </summary>
public sealed partial class BlockEngine
{
    /// <summary>Bytes written at a time when a file is preallocated with zeroes (preallocation=full).</summary>
    private const int ZeroChunkBytes = 1 << 20;

    /// <summary>What file-posix's allocate_first_block writes at most (its MAX_BLOCKSIZE).</summary>
    private const int FirstBlockBytes = 4096;

    /// <summary>qcow2's smallest and largest cluster (512 bytes, 2 MiB), as QEMU's validate_cluster_size says.</summary>
    private const int ClusterBitsMin = 9, ClusterBitsMax = 21;

    /// <summary>Extended L2 entries need 32 subclusters of at least 512 bytes.</summary>
    private const ulong ExtendedL2ClusterMin = 16384;

    /// <summary>The largest QAPI size a host file length can take (off_t).</summary>
    private const ulong FileSizeMax = long.MaxValue;

    private const int Enoent = 2, Eisdir = 21;

    private QmpError? Create(BlockdevCreate c)
    {
        if (c.Options is NoCreate no) return no.Error;
        if (!Names.IsWellFormed(c.JobId)) return QmpError.Generic($"Invalid job ID '{c.JobId}'");
        if (jobs.ContainsKey(c.JobId)) return QmpError.Generic($"Job ID '{c.JobId}' already in use");
        var job = new CreateJob(c.JobId, NextSeq(), jobEvents.Add);
        jobs.Add(job.Id, job);
        job.Move(JobStatus.Created);
        job.Move(JobStatus.Running);
        var early = c.Options switch
        {
            FileCreate f => StartFileCreate(job, f),
            Qcow2Create q => StartQcow2Create(job, q),
            _ => throw new InvalidOperationException($"no create for {c.Options.Driver}"),
        };
        if (early is not null)
        {
            job.Done(early.Desc);
            Completed(job);
        }
        System.Diagnostics.Debug.Assert(early is null ? job.HasWork : job.Status == JobStatus.Concluded, "a create job either waits for I/O or has ended");
        return null;
    }

    /// <summary>What a create job leaves when it ends: its BlockBackend (and a node it opened inline) goes; an unused file descriptor closes.</summary>
    private void CleanCreate(CreateJob job)
    {
        job.Release?.Invoke();
        job.Release = null;
        if (job.Backend is { } bb) DetachRoot(bb);
        job.Backend = null;
    }

    /// <summary>
    /// raw_co_create up to its first wait: the extent size hint, then the file is created (or opened) with
    /// mode 0644. After the reply it is emptied, then given its size: sparse (off), allocated (falloc) or
    /// written with zeroes (full); metadata is refused there as QEMU refuses it. Nocow and the hint are
    /// accepted and otherwise ignored, as QEMU ignores them where the host file system does not take them.
    /// </summary>
    private QmpError? StartFileCreate(CreateJob job, FileCreate f)
    {
        if (f.ExtentSizeHint > uint.MaxValue) return QmpError.Generic("Extent size hint is too large");
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(Services.Storage.Resolve(f.Filename), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            // .NET reports a directory as access denied; open(2) says EISDIR, and an empty name ENOENT.
            int errno = Directory.Exists(Services.Storage.Resolve(f.Filename)) ? Eisdir : HostErrno(e);
            return QmpError.Generic($"Could not create '{f.Filename}': {LinuxNative.ErrnoText(errno)}");
        }
        job.Release = handle.Dispose;
        job.Rest = () =>
        {
            using (handle) return SizeFile(handle, f.Size, f.Preallocation);
        };
        return null;
    }

    /// <summary>raw_co_create after its first wait: truncate to 0, then to the size with the preallocation asked.</summary>
    private static string? SizeFile(SafeFileHandle handle, ulong size, string prealloc)
    {
        try
        {
            RandomAccess.SetLength(handle, 0);
            if (prealloc is not ("off" or "falloc" or "full")) return $"Unsupported preallocation mode: {prealloc}";
            if (size > FileSizeMax) return $"Could not resize file: {LinuxNative.ErrnoText(Errnos.EINVAL)}";
            long length = (long)size;
            if (prealloc == "falloc" && length > 0)
            {
                int r = LinuxNative.Fallocate((int)handle.DangerousGetHandle(), 0, 0, length);
                // posix_fallocate writes zeroes where the file system cannot allocate.
                if (r == -Errnos.ENOTSUP) WriteZeroes(handle, length);
                else if (r < 0) return $"Could not preallocate new data: {LinuxNative.ErrnoText(-r)}";
            }
            RandomAccess.SetLength(handle, length);
            if (prealloc == "full") WriteZeroes(handle, length);
            // file-posix's allocate_first_block after growing an empty file sparsely (to speed up later
            // alignment probing): zeroes over the first 4 KiB, or over 512 bytes for a smaller file, which
            // leaves a file of less than 512 bytes 512 bytes long, as in QEMU.
            if (prealloc == "off" && length > 0) RandomAccess.Write(handle, new byte[length < FirstBlockBytes ? 512 : FirstBlockBytes], 0);
            return null;
        }
        catch (IOException e)
        {
            return $"Could not resize file: {LinuxNative.ErrnoText(HostErrno(e))}";
        }
    }

    private static void WriteZeroes(SafeFileHandle handle, long length)
    {
        var zeroes = new byte[(int)Math.Min(ZeroChunkBytes, length)];
        // Bounded by length / ZeroChunkBytes passes.
        for (long at = 0; at < length; at += zeroes.Length)
            RandomAccess.Write(handle, zeroes.AsSpan(0, (int)Math.Min(zeroes.Length, length - at)), at);
    }

    /// <summary>The errno behind a host file exception (.NET names the common ones by type rather than by HResult).</summary>
    private static int HostErrno(Exception e) => e switch
    {
        FileNotFoundException or DirectoryNotFoundException or ArgumentException => Enoent,
        UnauthorizedAccessException => Errnos.EACCES,
        IOException io => DriverOptions.ErrnoOf(io),
        _ => Errnos.EIO,
    };

    /// <summary>
    /// qcow2_co_create up to its first write: a named file node is looked up, the options are checked in
    /// QEMU's order, and the job's BlockBackend (write and resize, sharing all) is attached. An inline file is
    /// opened only after the reply (QEMU drains while opening it), so with one everything runs after the reply.
    /// </summary>
    private QmpError? StartQcow2Create(CreateJob job, Qcow2Create q)
    {
        if (q.File is BlockdevRefInline inline)
        {
            job.Rest = () => RunInlineQcow2Create(job, q, inline.Options);
            return null;
        }
        var name = ((BlockdevRefName)q.File).Name;
        if (!Live(name, out var node)) return QmpError.Generic($"Cannot find device='{name}' nor node-name='{name}'");
        var err = CheckQcow2Create(q) ?? AttachCreateBackend(job, node);
        if (err is not null) return err;
        job.Rest = () => WriteQcow2(job.Backend!, q);
        return null;
    }

    /// <summary>The whole qcow2 create over a file opened inline: open, check, attach, write, then the node goes with the job's BlockBackend.</summary>
    private string? RunInlineQcow2Create(CreateJob job, Qcow2Create q, BlockdevOptions fileOptions)
    {
        var tran = new UndoLog(Services.Mutation);
        var (node, err) = Open(tran, fileOptions, null, false);
        err ??= Rules.Refresher.Refresh([node!], tran);
        if (err is not null)
        {
            tran.Abort();
            return err.Desc;
        }
        tran.Commit();
        err = CheckQcow2Create(q) ?? AttachCreateBackend(job, node!);
        string? result = err?.Desc ?? WriteQcow2(job.Backend!, q);
        CleanCreate(job);
        if (!node!.Deleted && node.RefCount == 0) Delete(node);
        return result;
    }

    private QmpError? AttachCreateBackend(CreateJob job, BlockNode node)
    {
        var bb = new CreateBackend(NextSeq(), Io);
        var err = AttachRoot(bb, node);
        if (err is null) job.Backend = bb;
        return err;
    }

    /// <summary>qcow2_co_create's checks, in its order, then what Verified does not create (see spec/qcow2.md).</summary>
    private QmpError? CheckQcow2Create(Qcow2Create q)
    {
        int version = q.Version == "v2" ? 2 : 3;
        ulong cluster = q.ClusterSize ?? (1UL << Qcow2Image.ClusterBits);
        bool extendedL2 = q.ExtendedL2 ?? false;
        string prealloc = q.Preallocation ?? "off";
        long refcountBits = q.RefcountBits ?? 16;
        if (q.Size % 512 != 0) return QmpError.Generic("Image size must be a multiple of 512 bytes");
        if (extendedL2 && version < 3)
            return QmpError.Generic("Extended L2 entries are only supported with compatibility level 1.1 and above (use version=v3 or greater)");
        if (!BitOperations.IsPow2(cluster) || cluster < 1UL << ClusterBitsMin || cluster > 1UL << ClusterBitsMax)
            return QmpError.Generic($"Cluster size must be a power of two between {1 << ClusterBitsMin} and {1 << (ClusterBitsMax - 10)}k");
        if (extendedL2 && cluster < ExtendedL2ClusterMin)
            return QmpError.Generic($"Extended L2 entries are only supported with cluster sizes of at least {ExtendedL2ClusterMin} bytes");
        if (q.BackingFile is not null && prealloc != "off" && !extendedL2)
            return QmpError.Generic("Backing file and preallocation can only be used at the same time if extended_l2 is on");
        if (q.BackingFmt is not null && q.BackingFile is null) return QmpError.Generic("Backing format cannot be used without backing file");
        if (version < 3 && q.LazyRefcounts == true)
            return QmpError.Generic("Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 or greater)");
        if (refcountBits is <= 0 or > 64 || !BitOperations.IsPow2(refcountBits))
            return QmpError.Generic("Refcount width must be a power of two and may not exceed 64 bits");
        if (version < 3 && refcountBits != 16)
            return QmpError.Generic("Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or greater)");
        if (q.DataFileRaw == true && q.DataFile is null) return QmpError.Generic("data-file-raw requires data-file");
        if (q.DataFileRaw == true && q.BackingFile is not null) return QmpError.Generic("Backing file and data-file-raw cannot be used at the same time");
        if (q.DataFile is not null)
        {
            if (version < 3)
                return QmpError.Generic("External data files are only supported with compatibility level 1.1 and above (use version=v3 or greater)");
            if (q.DataFile is BlockdevRefName dn && !Live(dn.Name, out _)) return QmpError.Generic($"Cannot find device='{dn.Name}' nor node-name='{dn.Name}'");
            return QmpError.Generic("Verified does not create qcow2 images with an external data file");
        }
        if (q.CompressionType is "zstd")
        {
            if (version < 3)
                return QmpError.Generic("Non-zlib compression type is only supported with compatibility level 1.1 and above (use version=v3 or greater)");
            // QEMU's text when built without zstd, as Verified is.
            return QmpError.Generic("Unknown compression type");
        }
        if (q.Encrypt) return QmpError.Generic("Verified does not create encrypted qcow2 images");
        if (extendedL2) return QmpError.Generic("Verified does not create qcow2 images with extended L2 entries");
        if (prealloc != "off") return QmpError.Generic($"Verified creates qcow2 images with preallocation 'off' only, not '{prealloc}'");
        if (q.Size is > (ulong)Qcow2Image.SizeMax and <= long.MaxValue) return QmpError.Generic($"Verified creates qcow2 images of at most {Qcow2Image.SizeMax} bytes");
        return null;
    }

    /// <summary>
    /// qcow2_co_create's writes, as one: the image's bytes (header cluster, refcount table and block, L1
    /// entries) over the start of the file, which grows to hold them if shorter; bytes beyond stay, as
    /// QEMU neither truncates nor writes them.
    /// </summary>
    private static string? WriteQcow2(CreateBackend bb, Qcow2Create q)
    {
        var format = new Qcow2Format(q.Version == "v2" ? 2 : 3, BitOperations.Log2((ulong)(q.RefcountBits ?? 16)), q.LazyRefcounts ?? false);
        // A size beyond off_t (a negative number, wrapped) gets as far as QEMU gets: the empty image is
        // written, then its resize fails.
        bool negative = q.Size > long.MaxValue;
        byte[] image;
        try
        {
            image = Qcow2Image.Layout(negative ? 0 : (long)q.Size, q.BackingFile, q.BackingFile is null ? null : q.BackingFmt,
                BitOperations.Log2(q.ClusterSize ?? (1UL << Qcow2Image.ClusterBits)), format);
        }
        catch (ArgumentException e)
        {
            return $"Could not create the qcow2 image: {e.Message}";
        }
        System.Diagnostics.Debug.Assert(bb.Root is not null, "the job's BlockBackend holds the node until the job ends");
        var node = bb.Root!.Node;
        int length = image.Length;
        if (node.Length < length)
        {
            // The BlockBackend may write past the end: a file grows; other nodes (null-co) keep nothing there.
            if (node.Driver is FileDriver file && file.Truncate(length) is { } terr) return $"Could not write qcow2 header: {terr.Desc}";
            if (node.Driver is not FileDriver) length = (int)node.Length;
        }
        try
        {
            bb.WriteAsync(0, image.AsMemory(0, length)).AsTask().GetAwaiter().GetResult();
            bb.FlushAsync().AsTask().GetAwaiter().GetResult();
            // qcow2_co_create then opens what it wrote: a node that did not keep it (null-co) is no qcow2 image.
            var magic = new byte[sizeof(uint)];
            if (node.Length >= magic.Length) bb.ReadAsync(0, magic).AsTask().GetAwaiter().GetResult();
            if (System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(magic) != Qcow2Image.Magic) return "Image is not in qcow2 format";
        }
        catch (IOException e)
        {
            return $"Could not write qcow2 header: {LinuxNative.ErrnoText(DriverOptions.ErrnoOf(e))}";
        }
        return negative ? "Could not resize image: Image size cannot be negative" : null;
    }
}
