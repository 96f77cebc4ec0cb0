// NOT COMPILED HERE. Illustrative Unreal Engine 5 dedicated-server code; see ../../README.md.
#include "KumiGameMode.h"

#include "GameFramework/PlayerState.h"
#include "Kismet/GameplayStatics.h"
#include "Misc/FileHelper.h"
#include "HAL/PlatformMisc.h"

void AKumiGameMode::InitGame(const FString& MapName, const FString& Options, FString& ErrorMessage)
{
	Super::InitGame(MapName, Options, ErrorMessage);
	// The audience the director puts in server tokens is the game server's name. Under Agones that is
	// the GameServer name, which is also the pod's hostname; the Agones UE plugin's GetGameServer()
	// returns it too. KUMI_SERVER_NAME overrides it (local runs).
	FString Name = FPlatformMisc::GetEnvironmentVariable(TEXT("KUMI_SERVER_NAME"));
	if (Name.IsEmpty()) { Name = FPlatformMisc::GetEnvironmentVariable(TEXT("HOSTNAME")); }
	Verifier.ServerName = Name;
	const FString Issuer = FPlatformMisc::GetEnvironmentVariable(TEXT("KUMI_TOKEN_ISSUER"));
	if (!Issuer.IsEmpty()) { Verifier.Issuer = Issuer; }

	// Public keys of the director's signer: mount the JWKS (e.g. a ConfigMap) and point to it.
	FString Jwks, Error;
	const FString Path = FPlatformMisc::GetEnvironmentVariable(TEXT("KUMI_JWKS_FILE"));
	if (!FFileHelper::LoadFileToString(Jwks, *Path) || !Verifier.LoadJwks(Jwks, Error))
	{
		// Fail closed: without keys nobody can be admitted.
		ErrorMessage = FString::Printf(TEXT("kumi: cannot load JWKS from KUMI_JWKS_FILE=%s: %s"), *Path, *Error);
	}
}

void AKumiGameMode::PreLogin(const FString& Options, const FString& Address, const FUniqueNetIdRepl& UniqueId, FString& ErrorMessage)
{
	Super::PreLogin(Options, Address, UniqueId, ErrorMessage);
	if (!ErrorMessage.IsEmpty())
	{
		return;
	}
	// The client traveled with OpenLevel(address, true, "token=<jwt>"), so Options holds "?token=<jwt>".
	const FString Token = UGameplayStatics::ParseOption(Options, TEXT("token"));
	FKumiServerClaims Claims;
	FString Why;
	if (!Verifier.Verify(Token, Claims, Why))
	{
		// A non-empty ErrorMessage refuses the connection; the client sees it in its network failure.
		ErrorMessage = TEXT("kumi: ") + Why;
		UE_LOG(LogGameMode, Warning, TEXT("refused %s: %s"), *Address, *Why);
		return;
	}
	Admitted.Add(Token, Claims);
	UE_LOG(LogGameMode, Log, TEXT("admitted player=%s session=%s from %s"), *Claims.PlayerId, *Claims.SessionId, *Address);
}

FString AKumiGameMode::InitNewPlayer(APlayerController* PC, const FUniqueNetIdRepl& UniqueId, const FString& Options, const FString& Portal)
{
	// Bind the verified player id (JWT sub) to the connection, so gameplay never trusts a client-sent
	// name. The same Options string reaches PreLogin and InitNewPlayer, so the token finds the claims.
	FKumiServerClaims Claims;
	if (!Admitted.RemoveAndCopyValue(UGameplayStatics::ParseOption(Options, TEXT("token")), Claims))
	{
		return TEXT("kumi: not admitted by PreLogin"); // a non-empty return refuses the player
	}
	if (PC->PlayerState) { PC->PlayerState->SetPlayerName(Claims.PlayerId); }
	return Super::InitNewPlayer(PC, UniqueId, Options, Portal);
}
