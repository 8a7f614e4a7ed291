namespace Verified.Impl.Engine;

/// <summary>
/// Deliberate bugs the engine can be built with, one at a time: the test-only seam through which the
/// oracle's campaign proves it has teeth (each must be found and shrunk). <see cref="None"/> is the
/// engine; nothing outside tests and the campaign's self-check should pass anything else.
/// </summary>
public enum EngineMutation
{
    /// <summary>The engine as specified.</summary>
    None,

    /// <summary>Abort skips the undo of the oldest change that registered one.</summary>
    SkipOneUndo,

    /// <summary>
    /// Abort's undo callbacks run oldest first instead of newest first. (Its twin, commit callbacks oldest
    /// first, is an equivalent mutant here: every commit callback either settles one node's own perms or
    /// deletes a node whose reference count is already final, and no command can make the one
    /// order-sensitive pair, a snapshot's read-only reopen of the old top and the deletion of a writer of
    /// it, since the snapshot moves every such writer onto the overlay. 300,000 campaign steps never told
    /// the two orders apart, so it is not offered.)
    /// </summary>
    AbortOldestFirst,

    /// <summary>Transactions refresh permissions after every action instead of once on the final graph.</summary>
    RefreshEveryAction,

    /// <summary>The throttle filter stops sharing the resize permission with other parents of its child.</summary>
    ThrottleUnsharesResize,

    /// <summary>copy-before-write lets a guest write land on the source before it copies the old data.</summary>
    WriteBeforeCopy,

    /// <summary>A backup job copies the source as it is now over what its filter kept, not the point-in-time image.</summary>
    BackupCopiesCurrentData,
}
