using Verified.Vocabulary;

namespace Verified.Impl.IO;

/// <summary>A throttle-group object: limits shared by every throttle node that names it.</summary>
public sealed class ThrottleGroup
{
    /// <summary>Creates a group with the object's properties (the <c>limits</c> member as canonical JSON).</summary>
    public ThrottleGroup(string id, ValueMap<string> props)
    {
        ArgumentNullException.ThrowIfNull(id);
        ArgumentNullException.ThrowIfNull(props);
        Id = id;
        Props = props;
    }

    /// <summary>The object id.</summary>
    public string Id { get; }

    /// <summary>The object's properties as given to object-add.</summary>
    public ValueMap<string> Props { get; }

    /// <summary>How many throttle nodes belong to the group (object-del is refused while any do).</summary>
    public int Members { get; internal set; }
}
