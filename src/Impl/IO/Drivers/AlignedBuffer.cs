using System.Buffers;
using System.Runtime.InteropServices;

namespace Verified.Impl.IO;

/// <summary>
/// Zero-initialised native memory at a given alignment, usable as <see cref="Memory{T}"/>: the bounce
/// buffer O_DIRECT needs when the caller's buffer, offset or length is not aligned (QEMU's qemu_memalign).
/// </summary>
internal sealed unsafe class AlignedBuffer : MemoryManager<byte>
{
    private byte* pointer;
    private readonly int length;

    /// <summary>Allocates <paramref name="length"/> zeroed bytes aligned to <paramref name="alignment"/> (a power of two).</summary>
    public AlignedBuffer(int length, int alignment)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (alignment <= 0 || (alignment & (alignment - 1)) != 0) throw new ArgumentException("alignment must be a power of two", nameof(alignment));
        this.length = length;
        // AlignedAlloc of 0 bytes may return null; always take at least one alignment unit.
        nuint size = (nuint)Math.Max(length, alignment);
        pointer = (byte*)NativeMemory.AlignedAlloc(size, (nuint)alignment);
        NativeMemory.Clear(pointer, size);
    }

    /// <inheritdoc/>
    public override Span<byte> GetSpan()
    {
        ObjectDisposedException.ThrowIf(pointer == null, this);
        return new Span<byte>(pointer, length);
    }

    /// <inheritdoc/>
    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ObjectDisposedException.ThrowIf(pointer == null, this);
        return new MemoryHandle(pointer + elementIndex);
    }

    /// <inheritdoc/>
    public override void Unpin() { }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (pointer == null) return;
        NativeMemory.AlignedFree(pointer);
        pointer = null;
    }
}
