namespace Verified.Impl.Engine;

/// <summary>
/// QEMU's transaction API (util/transactions.c): each change is applied at once and registers how to
/// undo it (abort), finish it (commit) and free what it held (clean). Abort and commit both walk the
/// actions newest first, then the cleans newest first.
/// </summary>
internal sealed class UndoLog(EngineMutation mutation = EngineMutation.None)
{
    /// <summary>A bound on actions per transaction, so a runaway loop fails loudly.</summary>
    public const int ActionsMax = 1_000_000;

    private readonly List<(Action? Abort, Action? Commit, Action? Clean)> actions = [];
    private bool finished;

    /// <summary>Registers one action's callbacks.</summary>
    public void Add(Action? abort, Action? commit = null, Action? clean = null)
    {
        if (finished) throw new InvalidOperationException("transaction already finished");
        if (actions.Count >= ActionsMax) throw new InvalidOperationException($"more than {ActionsMax} actions in one transaction");
        actions.Add((abort, commit, clean));
    }

    /// <summary>Undoes everything, newest first, then cleans.</summary>
    public void Abort() => Finish(commit: false);

    /// <summary>Commits everything, newest first, then cleans.</summary>
    public void Commit() => Finish(commit: true);

    private void Finish(bool commit)
    {
        if (finished) throw new InvalidOperationException("transaction already finished");
        finished = true;
        int skip = !commit && mutation == EngineMutation.SkipOneUndo ? actions.FindIndex(a => a.Abort is not null) : -1;
        if (!commit && mutation == EngineMutation.AbortOldestFirst)
            for (int i = 0; i < actions.Count; i++) actions[i].Abort?.Invoke();
        else
            for (int i = actions.Count - 1; i >= 0; i--) if (i != skip) (commit ? actions[i].Commit : actions[i].Abort)?.Invoke();
        for (int i = actions.Count - 1; i >= 0; i--) actions[i].Clean?.Invoke();
    }
}
